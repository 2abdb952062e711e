"""The PostgreSQL database layer on a real cluster: migrated on open, transactions that commit or roll
back, the server's rules across sessions, and a server restart that is a named error once, then gone."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from scripts.throwaway_medusa import free_port
from scripts.throwaway_postgres import running_cluster
from service.database.errors import DatabaseBusy, DatabaseUnreachable
from service.database.migrations import load_migrations
from service.database.postgres import PostgresDatabase
from service.database.postgres_migrations import MIGRATION_LOCK_KEY, POSTGRES_MIGRATIONS_DIR
from tests.postgres_rows import pg_scalar

pytestmark = pytest.mark.postgres

START = """
INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)
VALUES ('running', now(), now(), $1, 'host:1:a') RETURNING id
"""


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[PostgresDatabase]:
    opened = await PostgresDatabase.open(postgres_url)
    yield opened
    await opened.close()


async def test_open_migrates_and_a_transaction_commits_or_rolls_back(database: PostgresDatabase) -> None:
    assert await database.applied_version() == len(load_migrations(POSTGRES_MIGRATIONS_DIR))
    async with database.transaction() as tx:
        (row,) = await tx.fetch_all(START, ("admin",))
        assert await tx.execute("UPDATE runs SET processed = 5 WHERE id = $1", (row["id"],)) == 1
    found = await database.fetch_one("SELECT processed, triggered_by FROM runs WHERE id = $1", (row["id"],))
    assert found is not None and tuple(found) == (5, "admin")

    with pytest.raises(RuntimeError, match="changed my mind"):
        async with database.transaction() as tx:
            await tx.execute("UPDATE runs SET processed = 9 WHERE id = $1", (row["id"],))
            raise RuntimeError("changed my mind")
    assert (await database.fetch_all("SELECT processed FROM runs"))[0][0] == 5
    assert database.target.startswith("postgresql://***@127.0.0.1:")  # no user name or password shown


async def test_two_transactions_at_once_start_one_run(database: PostgresDatabase) -> None:
    import asyncpg

    async def start(who: str) -> int:
        async with database.transaction() as tx:
            await asyncio.sleep(0.05)  # both inside their transactions together
            rows = await tx.fetch_all(START, (who,))
            return int(rows[0][0])

    outcomes = await asyncio.gather(start("a"), start("b"), return_exceptions=True)
    started = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, asyncpg.UniqueViolationError)]
    assert len(started) == 1 and len(refused) == 1, outcomes


async def test_unreachable_server_is_a_named_error_at_open() -> None:
    with pytest.raises(DatabaseUnreachable, match="cannot reach PostgreSQL at postgresql://") as caught:
        await PostgresDatabase.open(f"postgresql://postgres:secret@127.0.0.1:{free_port()}/x")
    assert "secret" not in str(caught.value)


async def test_a_restarted_server_is_one_named_error_then_the_pool_reconnects() -> None:
    with running_cluster(free_port()) as cluster:
        database = await PostgresDatabase.open(cluster.url("postgres"), pool_size=1)
        try:
            assert await database.fetch_one("SELECT 1") is not None
            cluster.stop()
            with pytest.raises(DatabaseUnreachable):
                await database.fetch_one("SELECT 1")
            cluster.start()
            results: list[Any] = []
            for _ in range(3):  # the broken session goes with its first use; a new one follows
                try:
                    results.append(await database.fetch_one("SELECT 41 + 1"))
                    break
                except DatabaseUnreachable as exc:
                    results.append(exc)
            last = results[-1]
            assert last is not None and not isinstance(last, Exception) and last[0] == 42, results
        finally:
            await database.close()


async def test_simultaneous_identical_lookups_share_one_query_but_never_across_our_own_commit(
    database: PostgresDatabase,
) -> None:
    async with database.transaction() as tx:
        await tx.execute("CREATE SEQUENCE reads")
    slow_read = "SELECT nextval('reads'), pg_sleep(0.3)"
    # Fifty polls at once: one query answers them all (the sequence moved once).
    rows = await asyncio.gather(*(database.fetch_one(slow_read) for _ in range(50)))
    assert {row[0] for row in rows if row is not None} == {1}
    # A lookup that starts after this process committed does not join a read begun before the commit.
    before = asyncio.create_task(database.fetch_one(slow_read))
    await asyncio.sleep(0.05)
    async with database.transaction() as tx:
        await tx.execute("SELECT 1")
    after = await database.fetch_one(slow_read)
    earlier = await before
    assert earlier is not None and after is not None and (earlier[0], after[0]) == (2, 3)
    # A caller that gives up does not take the others' answer with it.
    first, second = (asyncio.create_task(database.fetch_one(slow_read)) for _ in range(2))
    await asyncio.sleep(0.05)
    first.cancel()
    found = await second
    assert found is not None and found[0] == 4


async def test_the_workers_lookup_reads_the_stored_fingerprints_and_an_unreachable_server_answers_none(
    database: PostgresDatabase,
) -> None:
    from service.catalog.fingerprints import fingerprint_lookup
    from service.catalog.postgres_fingerprints import PostgresFingerprints
    from service.catalog.sink import StoredFingerprints
    from service.catalog.sql import SELECT_FINGERPRINTS

    async with database.transaction() as tx:
        (run,) = await tx.fetch_all(START, ("admin",))
        (category,) = await tx.fetch_all(
            "INSERT INTO categories (handle, name, created_run, created_at) VALUES ('c', 'C', $1, now())"
            " RETURNING id",
            (run[0],),
        )
        for external_id, archived in (("1", False), ("2", True)):
            await tx.execute(
                "INSERT INTO products (external_id, handle, title, description, category_id, price_minor,"
                " currency, content_hash, source_hash, created_run, updated_run, created_at, updated_at,"
                " archived_at) VALUES ($1, $1, 't', 'd', $2, 1, 'USD', 11, 22, $3, $3, now(), now(),"
                " CASE WHEN $4 THEN now() END)",
                (external_id, category[0], run[0], archived),
            )
    lookup = fingerprint_lookup(database, SELECT_FINGERPRINTS)
    assert isinstance(lookup, PostgresFingerprints) and "@127.0.0.1" not in repr(lookup)  # no credentials
    # As a worker calls it: no event loop of its own there, so from a plain thread here.
    found = await asyncio.to_thread(lookup, ["1", "2", "3"])
    # An archived product has no source fingerprint: its item is always mapped (it is restored).
    assert found == {"1": StoredFingerprints(11, 22), "2": StoredFingerprints(11, None)}
    gone = PostgresFingerprints(f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert await asyncio.to_thread(gone, ["1"]) == {}


FROZEN_S = 2.5


def freeze() -> None:
    """Stop this process's event loop for a while: none of its code runs, as under SIGSTOP."""
    time.sleep(FROZEN_S)


class FreezesMidway(list[tuple[str]]):
    """Rows whose reading stops the whole process for a while, as SIGSTOP or a paused VM would: the
    driver is then in the middle of sending them to the server. ``meanwhile`` runs as the freeze
    begins, in a thread of its own (the one thing of this process that still runs)."""

    def __init__(self, rows: list[tuple[str]], meanwhile: Callable[[], None] | None = None) -> None:
        super().__init__(rows)
        self._meanwhile = meanwhile

    def __iter__(self) -> Iterator[tuple[str]]:
        for index, row in enumerate(list.__iter__(self)):
            if index == 10:
                if self._meanwhile is not None:
                    threading.Thread(target=self._meanwhile).start()
                freeze()
            yield row


SESSION_ALIVE = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"


@pytest.mark.parametrize("where", ["between statements", "sending an executemany's rows"])
async def test_the_server_ends_a_transaction_whose_process_froze(postgres_url: str, where: str) -> None:
    # Frozen with the write lock held, a replica would stop every other replica's writes for as long
    # as it stays frozen: the server ends its session after the hold timeout, and the lock goes with it.
    database = await PostgresDatabase.open(postgres_url, hold_timeout_s=0.5)
    try:
        await database.fetch_all("CREATE TABLE scratch (x text)")
        with pytest.raises(DatabaseUnreachable):
            async with database.transaction() as tx:
                (session,) = await tx.fetch_all("SELECT pg_backend_pid()")
                if where == "between statements":
                    freeze()
                    await tx.execute("INSERT INTO scratch VALUES ('late')")
                else:
                    rows = FreezesMidway([(f"row {n}",) for n in range(50)])
                    await tx.execute_many("INSERT INTO scratch VALUES (?)", rows)
        assert await pg_scalar(postgres_url, SESSION_ALIVE, session[0]) == 0
        assert await pg_scalar(postgres_url, "SELECT count(*) FROM scratch") == 0
        async with database.transaction() as tx:  # the pool gives a live session, and the lock is free
            await tx.execute("INSERT INTO scratch VALUES ('next')")
        assert [tuple(row) for row in await database.fetch_all("SELECT x FROM scratch")] == [("next",)]
    finally:
        await database.close()


async def test_writers_give_up_with_a_named_error_on_a_process_frozen_in_the_middle_of_a_copy(
    postgres_url: str,
) -> None:
    # The one frozen session the server cannot end: it waits to read the rest of a COPY's rows. The
    # other replicas' writes then fail after the hold timeout (and are tried again) rather than wait.
    outcome: list[BaseException | None] = []

    def another_replica_writes() -> None:
        async def write() -> None:
            other = await PostgresDatabase.open(postgres_url, hold_timeout_s=0.5)
            try:
                async with other.transaction() as tx:
                    await tx.execute("INSERT INTO scratch VALUES ('other')")
            finally:
                await other.close()

        try:
            asyncio.run(write())
            outcome.append(None)
        except BaseException as exc:  # handed to the test's own thread
            outcome.append(exc)

    database = await PostgresDatabase.open(postgres_url, hold_timeout_s=0.5)
    try:
        await database.fetch_all("CREATE TABLE scratch (x text)")
        rows = FreezesMidway([(f"row {n}",) for n in range(50)], another_replica_writes)
        async with database.transaction() as tx:
            await tx.copy_rows("scratch", ["x"], rows)
        # Woken, the frozen process finishes its COPY: nothing of its own was lost.
        assert await pg_scalar(postgres_url, "SELECT count(*) FROM scratch") == 50
    finally:
        await database.close()
    (error,) = outcome
    assert isinstance(error, DatabaseBusy), repr(error)
    assert "held the write lock for over 0.5 s" in str(error)


async def test_a_replica_starting_while_another_migrates_waits_past_the_hold_timeout(
    postgres_url: str,
) -> None:
    # Writes give up on the write lock after the hold timeout; the migrations wait as long as it takes.
    import asyncpg

    migrating = await asyncpg.connect(postgres_url)
    try:
        held = migrating.transaction()
        await held.start()
        await migrating.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        opening = asyncio.ensure_future(PostgresDatabase.open(postgres_url, hold_timeout_s=0.2))
        await asyncio.sleep(1.0)
        assert not opening.done()
        await held.rollback()
        database = await asyncio.wait_for(opening, 30)
    finally:
        await migrating.close()
    try:
        assert await database.applied_version() == len(load_migrations(POSTGRES_MIGRATIONS_DIR))
    finally:
        await database.close()
