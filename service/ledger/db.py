"""SQLite connections: one write connection (serialised by a lock) and one read connection.

WAL mode lets the read connection answer status polls while a sync batch is being written, and one
write connection means our own transactions never wait on each other inside SQLite.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from service.ledger.migrations import apply_migrations, load_migrations


class DatabaseError(Exception):
    """The database could not be opened, migrated or written."""


async def _connect(path: Path, busy_timeout_s: float, *, readonly: bool) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly what we say.
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            await conn.execute("PRAGMA query_only = ON")
        else:
            await conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode survives process crashes; only an OS crash can lose the last commits.
            await conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        await conn.close()
        raise
    return conn


class Database:
    """Owns the connections to one SQLite file. Use :meth:`open` and :meth:`close` (or a cleanup_ctx)."""

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection, schema_version: int
    ) -> None:
        self.path = path
        self.schema_version = schema_version  # the newest migration this code knows
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, migrations_dir: Path, busy_timeout_s: float = 5.0) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = await _connect(path, busy_timeout_s, readonly=False)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {path}: {exc}") from exc
        try:
            schema_version = len(load_migrations(migrations_dir))
            await apply_migrations(writer, migrations_dir)
            reader = await _connect(path, busy_timeout_s, readonly=True)
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, reader, schema_version)

    async def close(self) -> None:
        async with self._write_lock:
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction on the single write connection.

        BEGIN IMMEDIATE takes SQLite's write lock up front, so a transaction that reads then writes
        can't be invalidated by another process writing in between.
        """
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    async def fetch_one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Row | None:
        async with self._reader.execute(sql, params) as cursor:
            row: sqlite3.Row | None = await cursor.fetchone()
            return row

    async def fetch_all(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        async with self._reader.execute(sql, params) as cursor:
            rows: Iterable[sqlite3.Row] = await cursor.fetchall()
            return list(rows)
