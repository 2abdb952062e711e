"""PostgreSQL access for replicated deployments (issue 18): a small asyncpg pool, migrated on open.

The same shape as the SQLite layer (``fetch_one``, ``fetch_all``, ``transaction()`` handing out a
:class:`PostgresTransaction` of statements only), so the ledger and the sinks can be given either. A
server that cannot be reached, restarted, or cut a session is a named :class:`DatabaseUnreachable`;
the pool replaces the broken connection, so the next call reconnects without a restart of ours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.database.errors import DatabaseError
from service.database.postgres_migrations import POSTGRES_MIGRATIONS_DIR, apply_postgres_migrations
from service.upstream.urls import redact_url

# The faults that mean "no working session to the server" (rather than a statement's own error).
_UNREACHABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


if TYPE_CHECKING:  # asyncpg's classes are generic only in its stubs
    Session = asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]


class DatabaseUnreachable(DatabaseError):
    """PostgreSQL could not be reached, or dropped the session (a restart, a network cut)."""


def _affected(status: str) -> int:
    """Rows a statement changed, from its command tag (``UPDATE 3``, ``INSERT 0 1``, ``DELETE 0``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresTransaction:
    """Statements inside one transaction; commit and rollback belong to the database's context."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Session) -> None:
        self._conn = conn

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return list(await self._conn.fetch(sql, *params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return _affected(await self._conn.execute(sql, *params))

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)


class PostgresDatabase:
    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self.target = redact_url(url)  # shown in logs and answers, never with a password

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 4, migrations_dir: Path = POSTGRES_MIGRATIONS_DIR
    ) -> PostgresDatabase:
        """Connect (a pool of ``pool_size``), and apply the migrations not yet applied."""
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        except _UNREACHABLE as exc:
            raise DatabaseUnreachable(f"cannot reach PostgreSQL at {redact_url(url)}: {exc}") from exc
        database = cls(pool, url)
        try:
            async with database._connection() as conn:
                await apply_postgres_migrations(conn, migrations_dir)
        except BaseException:
            await pool.close()
            raise
        return database

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Session]:
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _UNREACHABLE as exc:
            raise DatabaseUnreachable(f"lost PostgreSQL at {self.target}: {exc}") from exc

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> asyncpg.Record | None:
        async with self._connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *params)
            return row

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        async with self._connection() as conn:
            return list(await conn.fetch(sql, *params))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """One transaction on one pooled connection: committed when the block ends, rolled back if it
        raises (the server rolls back by itself a transaction whose session it lost)."""
        async with self._connection() as conn, conn.transaction():
            yield PostgresTransaction(conn)

    async def schema_version(self) -> int:
        version = await self.fetch_one("SELECT max(version) FROM schema_migrations")
        return int(version[0]) if version is not None and version[0] is not None else 0

    async def close(self) -> None:
        await self._pool.close()
