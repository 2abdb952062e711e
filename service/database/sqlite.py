"""SQLite connections: one write connection (serialised by a lock) and two read connections.

WAL mode lets the read connections answer status polls while a sync batch is being written, and one
write connection means our own transactions never wait on each other inside SQLite. Reads of many rows go
through aiosqlite's thread; single-row lookups are run on the event loop itself (see :meth:`fetch_one`).

"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from service.database.access import Params
from service.database.errors import DatabaseBusy, DatabaseError, DatabaseFileGone
from service.database.migrations import apply_migrations, load_migrations
from service.database.wal_checkpoints import BackgroundCheckpoints

# The smallest cache that wrote a large catalog as fast as bigger ones (the OS caches the file too):
# every KiB of it stays resident for the service's whole life. Measurements: docs/benchmarks.md.
_WRITER_CACHE_KIB = 16 * 1024
# SQLite's default auto-checkpoint copies the WAL into the database file, with an fsync, inside a commit
# every few batches of a large sync, which was a large share of a fresh sync's time. Ten times the default
# checkpoints a tenth as often, and pages written by several batches (the unique indexes' leaves) are
# copied once, not each time.
WRITER_AUTOCHECKPOINT_PAGES = 10_000


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    # Extended codes (SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT, ...) share the primary code's low byte.
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def file_uri(path: Path, query: str) -> str:
    # as_uri percent-encodes what SQLite's URI parser would read as a query or fragment ('?', '#', '%').
    return f"{path.absolute().as_uri()}?{query}"


def _identity(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _checkpoint(path: Path) -> int:
    """A PASSIVE checkpoint on a connection of its own; returns the pages the log holds."""
    # mode=rw: a plain connect creates the file when it is missing, and an empty database at the path
    # would then pass for the real one.
    conn = sqlite3.connect(file_uri(path, "mode=rw"), uri=True, isolation_level=None)
    try:
        _busy, log_pages, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return int(log_pages)


def _connect_inline_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        # Never wait on the event loop: a busy file makes fetch_one fall back to the threaded reader.
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _busy_timeout(seconds: float) -> str:
    """The statement that makes a connection wait up to ``seconds`` for another's lock."""
    return f"PRAGMA busy_timeout = {int(seconds * 1000)}"


async def _connect(path: Path, busy_timeout_s: float, *, readonly: bool) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly what we say.
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(_busy_timeout(busy_timeout_s))
        await conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            await conn.execute("PRAGMA query_only = ON")
        else:
            await conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode survives process crashes; only an OS crash can lose the last commits.
            await conn.execute("PRAGMA synchronous = NORMAL")
            # The catalog's unique indexes (external_id, handle) take random inserts: with SQLite's default
            # page cache a large catalog is re-read from the OS on every batch. Bounded, so the
            # service's memory still does not grow with the feed.
            await conn.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
            await conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
    except BaseException:
        await conn.close()
        raise
    return conn


class Transaction:
    """The statements of one write transaction; commit and rollback belong to the database (its
    :meth:`SqliteDatabase.transaction`).

    Callers get this, never the connection, so how a transaction runs stays inside this module.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch_all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """The rows of a query, or of a statement's RETURNING clause (one hop to the writer's thread)."""
        return list(await self._conn.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return how many rows it changed."""
        cursor = await self._conn.execute(sql, params)
        return cursor.rowcount

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement per parameter row."""
        await self._conn.executemany(sql, rows)

    async def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """An INSERT per row, in one hop: SQLite binds parameters as fast as anything would."""
        marks = ", ".join("?" * len(columns))
        await self._conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


class SameTurnRows:
    """Single-row lookups shared by the callers of one turn of the event loop.

    Under load dozens of status polls are answered in one turn; they are simultaneous, so one snapshot is
    as current for each of them. Emptied when the turn ends (scheduled by the first row stored) and when
    this process commits (:meth:`clear`), so no caller ever sees a row older than its own write.
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[tuple[str, tuple[Any, ...]], sqlite3.Row | None] = {}

    def is_empty(self) -> bool:
        return not self._rows

    def get(self, key: tuple[str, tuple[Any, ...]]) -> tuple[bool, sqlite3.Row | None]:
        """(found, row): a lookup of this turn may have found no row, which is an answer too."""
        if key in self._rows:
            return True, self._rows[key]
        return False, None

    def put(self, key: tuple[str, tuple[Any, ...]], row: sqlite3.Row | None) -> None:
        if not self._rows:
            asyncio.get_running_loop().call_soon(self._rows.clear)
        self._rows[key] = row

    def clear(self) -> None:
        self._rows.clear()


class SqliteDatabase:
    """Owns the connections to one SQLite file. Use :meth:`open` and :meth:`close` (or a cleanup_ctx)."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        inline_reader: sqlite3.Connection,
        known_version: int,
        identity: tuple[int, int],
        busy_timeout_s: float,
    ) -> None:
        self.path = path
        # The writer's, put back after a BEGIN that would not wait.
        self._busy_timeout = _busy_timeout(busy_timeout_s)
        self.known_version = known_version  # the newest migration this code knows
        self._identity = identity  # (st_dev, st_ino) of the file opened
        self._writer = writer
        self._reader = reader
        self._inline_reader = inline_reader
        self._turn_rows = SameTurnRows()
        self._write_lock = asyncio.Lock()
        # The log's pages go back into the file off the write connection (see wal_checkpoints.py).
        self._checkpoints = BackgroundCheckpoints(self._checkpoint_now, WRITER_AUTOCHECKPOINT_PAGES)

    @classmethod
    async def open(cls, path: Path, migrations_dir: Path, busy_timeout_s: float = 5.0) -> SqliteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = await _connect(path, busy_timeout_s, readonly=False)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {path}: {exc}") from exc
        try:
            identity = _identity(path)
            known_version = len(load_migrations(migrations_dir))
            await apply_migrations(writer, migrations_dir)
            reader = await _connect(path, busy_timeout_s, readonly=True)
        except BaseException:
            await writer.close()
            raise
        try:
            inline_reader = _connect_inline_reader(path)
        except BaseException:
            await reader.close()
            await writer.close()
            raise
        database = cls(path, writer, reader, inline_reader, known_version, identity, busy_timeout_s)
        database._checkpoints.start()
        return database

    @property
    def target(self) -> str:
        return str(self.path)

    @property
    def address(self) -> str:
        return str(self.path.absolute())

    async def applied_version(self) -> int:
        # The same check every read and write makes (once per turn of the loop), here on every call: a
        # deleted file keeps answering reads through the connections still open to it.
        self.check_file()
        row = await self.fetch_one("SELECT max(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    def check_file(self) -> None:
        """Raise DatabaseFileGone unless the path still leads to the file opened (one stat call)."""
        try:
            found = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            raise DatabaseFileGone(self.path, "was deleted") from None
        except OSError as exc:
            raise DatabaseFileGone(self.path, f"can no longer be found ({exc.strerror})") from exc
        if (found.st_dev, found.st_ino) != self._identity:
            raise DatabaseFileGone(self.path, "was replaced by another file")

    async def close(self) -> None:
        await self._checkpoints.close()
        async with self._write_lock:
            self._inline_reader.close()
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self, *, wait: bool = True) -> AsyncIterator[Transaction]:
        """A write transaction on the single write connection.

        BEGIN IMMEDIATE takes SQLite's write lock up front, so a transaction that reads then writes
        can't be invalidated by another process writing in between. ``wait=False``: DatabaseBusy at
        once if another process holds that lock, instead of waiting up to the busy timeout.
        """
        async with self._write_lock:
            self.check_file()
            try:
                # Inside the try: a cancel that lands while BEGIN is queued still lets BEGIN run in
                # aiosqlite's thread, and the rollback below (queued after it) closes what it opened.
                if wait:
                    await self._writer.execute("BEGIN IMMEDIATE")
                else:
                    await self._begin_unless_busy()
                yield Transaction(self._writer)
            except BaseException:
                await self._rollback()
                raise
            try:
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._rollback()  # a failed COMMIT (disk full, I/O error) leaves the transaction open
                raise
            finally:
                self._turn_rows.clear()  # rows read before this commit must not answer after it
            self._checkpoints.committed(self._writer.total_changes)

    async def _begin_unless_busy(self) -> None:
        # The write connection is this process's alone and used under _write_lock: its busy timeout
        # may be lowered for one BEGIN and put back.
        await self._writer.execute(_busy_timeout(0))
        try:
            await self._writer.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise DatabaseBusy("another process holds the database's write lock") from exc
            raise
        finally:
            await self._writer.execute(self._busy_timeout)

    async def _rollback(self) -> None:
        # sqlite3's rollback() is a no-op outside a transaction, so this is safe whatever state BEGIN,
        # the body or COMMIT left; being queued on the same thread, it runs after them.
        await self._writer.rollback()

    async def checkpoint(self) -> None:
        """Copy the WAL back into the database file now (PASSIVE: never waits for readers or writers).

        Called at the end of a run, so the next small commit (a trigger) does not pay for the run's
        pages with an auto-checkpoint and its fsync. On a connection of its own, in a thread: on the
        write connection it queued a trigger right after the run's end behind the copy and the fsync.
        Never on a file other than the one opened, and never creating one.
        """
        await asyncio.to_thread(self._checkpoint_now)

    def _checkpoint_now(self) -> int:
        self.check_file()
        return _checkpoint(self.path)

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """The first row of an indexed single-row lookup (the latest run, a run by id, the running run).

        Run on the event loop: such a read takes a few microseconds from the page cache, less than the
        hand-off to aiosqlite's thread and back, which was most of a status poll's cost. In WAL mode a
        reader never waits for the writer; when SQLite still answers busy (another connection running
        WAL recovery), the read is retried on the threaded reader, which may wait.

        Lookups made in the same turn of the event loop share one read (:class:`SameTurnRows`).
        """
        key = (sql, tuple(params.items()) if isinstance(params, Mapping) else tuple(params))
        found, shared = self._turn_rows.get(key)
        if found:
            return shared
        if self._turn_rows.is_empty():
            # Once per turn, like the shared rows: the lookups of one turn are simultaneous anyway.
            self.check_file()
        try:
            # fetchall, not fetchone: stepping to the end resets the statement, so no read
            # transaction (and its WAL snapshot) outlives the call.
            rows: list[sqlite3.Row] = self._inline_reader.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            fallback = await self.fetch_all(sql, params)  # answered in a later turn: not shared
            return fallback[0] if fallback else None
        row = rows[0] if rows else None
        self._turn_rows.put(key, row)
        return row

    async def fetch_all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        self.check_file()
        try:
            # One hop to aiosqlite's thread instead of three (execute, fetch, close): status polls are
            # answered sooner and queue less behind each other.
            rows: Iterable[sqlite3.Row] = await self._reader.execute_fetchall(sql, params)
        except sqlite3.Error:
            self.check_file()  # deleted meanwhile: SQLite only says "disk I/O error"
            raise
        return list(rows)
