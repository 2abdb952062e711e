"""Owner liveness on a real PostgreSQL: a session-level advisory lock per process, so any replica tells
a dead owner at once (SIGKILL, a session the server cut), and a cut owner knows it lost its lock."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.database.postgres import PostgresDatabase
from service.ledger.pg_owner import PostgresOwnerLock, lock_key
from tests.service_process import REPO_ROOT

pytestmark = pytest.mark.postgres

HOLDER = """
import asyncio, sys
from service.database.postgres import PostgresDatabase
from service.ledger.pg_owner import PostgresOwnerLock

async def main():
    lock = PostgresOwnerLock(await PostgresDatabase.open(sys.argv[1]))
    await lock.acquire()
    print(lock.owner_id, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[PostgresDatabase]:
    opened = await PostgresDatabase.open(postgres_url)
    yield opened
    await opened.close()


@pytest.fixture
async def conn(database: PostgresDatabase, postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres_url)
    yield connection
    await connection.close()


async def eventually(check: object, timeout_s: float = 2.0) -> float:
    """Seconds until the coroutine function ``check`` answers True; fails after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < timeout_s:
        if await check():  # type: ignore[operator]
            return loop.time() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s")


async def test_a_killed_owner_is_dead_at_once(postgres_url: str, database: PostgresDatabase) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, postgres_url, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        owner_id = (await asyncio.wait_for(holder.stdout.readline(), 20)).decode().strip()
        observer = PostgresOwnerLock(database)
        assert await observer.is_alive(owner_id)
        holder.send_signal(signal.SIGKILL)
        await holder.wait()

        async def dead() -> bool:
            return not await observer.is_alive(owner_id)

        await eventually(dead)  # the server ends the session as the socket closes: no timeout
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_a_session_cut_by_the_server_is_a_lost_lock(
    database: PostgresDatabase, conn: asyncpg.Connection
) -> None:
    owner = PostgresOwnerLock(database)
    await owner.acquire()
    try:
        assert not await owner.is_lost() and await owner.is_alive(owner.owner_id)
        key = lock_key(owner.owner_id) & 0xFFFF_FFFF_FFFF_FFFF
        pid = await conn.fetchval(
            "SELECT pid FROM pg_locks"
            " WHERE locktype = 'advisory' AND classid::bigint = $1 AND objid::bigint = $2",
            key >> 32,
            key & 0xFFFF_FFFF,
        )
        assert pid is not None
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        other = PostgresOwnerLock(database)

        async def dead() -> bool:
            return not await other.is_alive(owner.owner_id)

        await eventually(dead)
        assert await owner.is_lost()  # the owner notices, and must stop writing
        assert not await owner.is_alive(owner.owner_id)
    finally:
        await owner.release()


async def test_owners_do_not_share_a_lock_and_release_frees_it(database: PostgresDatabase) -> None:
    first, second = PostgresOwnerLock(database), PostgresOwnerLock(database)
    await first.acquire()
    await second.acquire()
    try:
        assert first.owner_id != second.owner_id
        assert await first.is_alive(second.owner_id) and await second.is_alive(first.owner_id)
        await first.release()
        assert not await second.is_alive(first.owner_id)
        assert await first.is_lost()
        assert not await second.is_alive("some-host.1.deadbeef")  # never seen: not alive
    finally:
        await first.release()
        await second.release()


async def test_the_schema_computes_the_same_lock_key(conn: asyncpg.Connection) -> None:
    for owner_id in ("host.1.deadbeef", "a-much-longer_host.name.12345.0123abcd", "ü.2.x"):
        assert await conn.fetchval("SELECT owner_lock_key($1)", owner_id) == lock_key(owner_id)
