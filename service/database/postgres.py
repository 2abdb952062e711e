"""PostgreSQL access for replicated deployments: a small asyncpg pool, migrated on open.

It implements the database seam (``access.Database``) as the SQLite layer does, so the ledger, the
catalog and the outbox are given either. A server that cannot be reached, restarted, or cut a session
is a named :class:`DatabaseUnreachable`; the pool replaces the broken connection, so the next call
reconnects without a restart of ours.

Two things make the layers' SQL run here unchanged where it can:

- Parameters: statements are written with ``:name``, ``?1`` or ``?`` placeholders (SQLite's styles);
  they are rewritten once per statement text into PostgreSQL's ``$1``.
- Timestamps: the schema keeps them as ``timestamptz`` (binary on the wire, so COPY carries them too);
  callers give and get the contract's text (``2026-01-07T13:33:12.000Z``), as the SQLite layer stores
  them, so records read the same.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.database.access import Params
from service.database.errors import DatabaseBusy, DatabaseUnreachable
from service.database.migrations import load_migrations
from service.database.postgres_migrations import POSTGRES_MIGRATIONS_DIR, apply_postgres_migrations
from service.support.timeutil import from_iso, to_iso
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


# Every write transaction takes this lock first, so writers queue as they do on SQLite's one write lock:
# the ledger's read-then-write steps (recover a dead run, then start one; claim a tick) hold across
# replicas. READ COMMITTED gives each statement after the lock the rows committed before it.
WRITE_LOCK_KEY = 0x70726F647379_6E63  # "prodsync"
_TAKE_WRITE_LOCK = "SELECT pg_advisory_xact_lock($1)"
_TRY_WRITE_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
# Our transactions never wait on anything but this process (the shop's and the feed's requests happen
# outside them), and a batch's statements follow each other within milliseconds.
DEFAULT_HOLD_TIMEOUT_S = 10.0

# :name (not ::type), ?N, or ?
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)|\?(\d+)|\?")


class Compiled:
    """A statement rewritten for PostgreSQL, and how to order a call's parameters for it."""

    __slots__ = ("names", "sql")

    def __init__(self, sql: str) -> None:
        names: list[str] = []
        counter = 0

        def number(match: re.Match[str]) -> str:
            nonlocal counter
            name, position = match.group(1), match.group(2)
            if name is not None:
                if name not in names:
                    names.append(name)
                return f"${names.index(name) + 1}"
            if position is not None:
                return f"${position}"
            counter += 1
            return f"${counter}"

        self.sql = _PLACEHOLDER.sub(number, sql)
        self.names = tuple(names)

    def arguments(self, params: Params) -> Sequence[Any]:
        if isinstance(params, Mapping):
            return [params[name] for name in self.names]
        return params


# timestamptz on the wire (binary, so COPY can carry it too): microseconds since 2000-01-01 UTC.
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _encode_timestamp(value: str | datetime) -> bytes:
    moment = from_iso(value) if isinstance(value, str) else value
    return ((moment - _POSTGRES_EPOCH) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True)


class _TimestampEncoder:
    """The codec's encoder for one session, remembering its last value: a batch's rows all carry the
    batch's time (twice), and parsing it again for each row was a large share of a COPY's time on the
    event loop."""

    __slots__ = ("_bytes", "_value")

    def __init__(self) -> None:
        self._value: str | datetime | None = None
        self._bytes = b""

    def __call__(self, value: str | datetime) -> bytes:
        if value != self._value:
            self._value, self._bytes = value, _encode_timestamp(value)
        return self._bytes


def _decode_timestamp(data: bytes) -> str:
    # Infinity (the largest and smallest values) never occurs in this schema.
    return to_iso(_POSTGRES_EPOCH + timedelta(microseconds=int.from_bytes(data, "big", signed=True)))


async def prepare_session(conn: asyncpg.Connection) -> None:
    """What every session of ours is set up with: timestamps as the contract's text, both ways."""
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=_TimestampEncoder(),
        decoder=_decode_timestamp,
        format="binary",
    )


def _affected(status: str) -> int:
    """Rows a statement changed, from its command tag (``UPDATE 3``, ``INSERT 0 1``, ``DELETE 0``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class Statements:
    """The rewritten statements of this database, one rewrite per statement text."""

    __slots__ = ("_compiled",)

    def __init__(self) -> None:
        self._compiled: dict[str, Compiled] = {}

    def get(self, sql: str) -> Compiled:
        found = self._compiled.get(sql)
        if found is None:
            found = self._compiled[sql] = Compiled(sql)
        return found


class SharedReads:
    """Identical single-row reads in flight at the same time share one query.

    Under load dozens of status polls arrive together; each would otherwise wait for a pooled session
    and make its own round trip. A caller joins a read in flight only if this process committed nothing
    since that read began (``committed()``), so no caller sees a row older than its own write.
    """

    __slots__ = ("_generation", "_in_flight")

    def __init__(self) -> None:
        self._generation = 0
        self._in_flight: dict[tuple[str, tuple[Any, ...]], tuple[int, asyncio.Future[Any]]] = {}

    def committed(self) -> None:
        self._generation += 1

    async def read(self, key: tuple[str, tuple[Any, ...]], fetch: Callable[[], Awaitable[Any]]) -> Any:
        found = self._in_flight.get(key)
        if found is not None and found[0] == self._generation:
            # Shielded: one caller given up (a cancelled request) must not cancel the others' read.
            return await asyncio.shield(found[1])
        shared = asyncio.ensure_future(fetch())
        entry = (self._generation, shared)
        self._in_flight[key] = entry
        shared.add_done_callback(lambda _: self._forget(key, entry))
        return await asyncio.shield(shared)

    def _forget(self, key: tuple[str, tuple[Any, ...]], entry: tuple[int, asyncio.Future[Any]]) -> None:
        if self._in_flight.get(key) is entry:
            del self._in_flight[key]


def _milliseconds(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


class PostgresTransaction:
    """Statements inside one transaction; commit and rollback belong to the database's context."""

    __slots__ = ("_conn", "_statements")

    def __init__(self, conn: Session, statements: Statements) -> None:
        self._conn = conn
        self._statements = statements

    async def fetch_all(self, sql: str, params: Params = ()) -> list[asyncpg.Record]:
        compiled = self._statements.get(sql)
        return list(await self._conn.fetch(compiled.sql, *compiled.arguments(params)))

    async def execute(self, sql: str, params: Params = ()) -> int:
        compiled = self._statements.get(sql)
        return _affected(await self._conn.execute(compiled.sql, *compiled.arguments(params)))

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        compiled = self._statements.get(sql)
        await self._conn.executemany(compiled.sql, [compiled.arguments(row) for row in rows])

    async def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """COPY (binary): one round trip for the whole batch, no statement per row."""
        await self._conn.copy_records_to_table(table, records=rows, columns=list(columns))


class PostgresDatabase:
    dialect: Literal["postgres"] = "postgres"

    def __init__(self, pool: asyncpg.Pool, url: str, known_version: int, hold_timeout_s: float) -> None:
        self._pool = pool
        self._hold_timeout_s = hold_timeout_s
        self.address = url  # for the owner lock's own session, and the workers' lookups
        self.target = redact_url(url)  # shown in logs and answers, never with a password
        self.known_version = known_version
        self._statements = Statements()
        self._shared = SharedReads()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 4,
        migrations_dir: Path = POSTGRES_MIGRATIONS_DIR,
        migrate: bool = True,
        hold_timeout_s: float = DEFAULT_HOLD_TIMEOUT_S,
    ) -> PostgresDatabase:
        """Connect (a pool of ``pool_size``), and apply the migrations not yet applied (``migrate``;
        an auditor's read-only role reads without).

        ``hold_timeout_s`` bounds what a replica frozen in a write (SIGSTOP, a paused VM) or cut off
        from the server does to the others. The server ends a session of ours that has kept a
        transaction open that long without a word (the write lock goes with it), and a write waits
        that long at most for the write lock (then DatabaseBusy): a session the server cannot end, one
        frozen in the middle of sending a COPY's rows, then fails the others' writes instead of
        holding them up until it wakes.
        """
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                init=prepare_session,
                server_settings={
                    "timezone": "UTC",
                    "application_name": "product-sync",
                    "idle_in_transaction_session_timeout": _milliseconds(hold_timeout_s),
                    "lock_timeout": _milliseconds(hold_timeout_s),
                },
            )
        except _UNREACHABLE as exc:
            raise DatabaseUnreachable(f"cannot reach PostgreSQL at {redact_url(url)}: {exc}") from exc
        database = cls(pool, url, len(load_migrations(migrations_dir)), hold_timeout_s)
        if not migrate:
            return database
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
        # InternalClientError: the driver found the session mid-protocol (a stray message on an idle
        # session); it has closed that session itself, and the pool opens a clean one.
        except (*_UNREACHABLE, asyncpg.InternalClientError) as exc:
            raise DatabaseUnreachable(f"lost PostgreSQL at {self.target}: {exc}") from exc

    async def fetch_one(self, sql: str, params: Params = ()) -> asyncpg.Record | None:
        """The first row of a single-row lookup (the latest run, a run by id); simultaneous identical
        lookups share one query (:class:`SharedReads`)."""
        compiled = self._statements.get(sql)
        arguments = compiled.arguments(params)

        async def fetch() -> asyncpg.Record | None:
            async with self._connection() as conn:
                row: asyncpg.Record | None = await conn.fetchrow(compiled.sql, *arguments)
                return row

        found: asyncpg.Record | None = await self._shared.read((sql, tuple(arguments)), fetch)
        return found

    async def fetch_all(self, sql: str, params: Params = ()) -> list[asyncpg.Record]:
        compiled = self._statements.get(sql)
        async with self._connection() as conn:
            return list(await conn.fetch(compiled.sql, *compiled.arguments(params)))

    @asynccontextmanager
    async def transaction(self, *, wait: bool = True) -> AsyncIterator[PostgresTransaction]:
        """One transaction on one pooled connection, after every earlier writer's (the write lock):
        committed when the block ends, rolled back if it raises (the server rolls back by itself a
        transaction whose session it lost). ``wait=False``: DatabaseBusy at once if the lock is held."""
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    if wait:
                        await self._take_write_lock(conn)
                    elif not await conn.fetchval(_TRY_WRITE_LOCK, WRITE_LOCK_KEY):
                        raise DatabaseBusy("another session holds the write lock")
                    yield PostgresTransaction(conn, self._statements)
            finally:
                self._shared.committed()  # reads begun before this commit (or rollback) are not joined

    async def _take_write_lock(self, conn: Session) -> None:
        try:
            await conn.execute(_TAKE_WRITE_LOCK, WRITE_LOCK_KEY)
        except asyncpg.LockNotAvailableError as exc:
            raise DatabaseBusy(
                f"another session has held the write lock for over {self._hold_timeout_s:g} s"
                " (a replica frozen in the middle of a write?); try again"
            ) from exc

    async def applied_version(self) -> int:
        version = await self.fetch_one("SELECT max(version) FROM schema_migrations")
        return int(version[0]) if version is not None and version[0] is not None else 0

    async def checkpoint(self) -> None:
        """Nothing to fold: PostgreSQL's own checkpointer does it in the background."""

    async def close(self) -> None:
        await self._pool.close()
