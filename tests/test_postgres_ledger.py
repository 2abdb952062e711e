"""The ledger's rules on a real PostgreSQL, through the ledger itself: two ledgers stand for two replicas,
each with its own pool and owner lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from service.database.postgres import WRITE_LOCK_KEY, PostgresDatabase
from service.domain.outcomes import BatchCounts, ItemError
from service.ledger.pg_owner import PostgresOwnerLock
from service.ledger.records import INTERRUPTED_MESSAGE, RunAlreadyRunning, RunNoLongerRunning
from service.ledger.runs import Ledger
from tests.test_contract import TIMESTAMP

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def replica(
    url: str, stall_timeout_s: float = 60, hold_timeout_s: float = 10
) -> AsyncIterator[tuple[Ledger, PostgresOwnerLock]]:
    database = await PostgresDatabase.open(url, hold_timeout_s=hold_timeout_s)
    owner = PostgresOwnerLock(database)
    await owner.acquire()
    try:
        yield Ledger(database, owner, stall_timeout_s), owner
    finally:
        await owner.release()
        await database.close()


async def cut_session_of(url: str, owner: PostgresOwnerLock) -> None:
    """What the server does when it ends a session (an admin, a network cut): the owner's lock goes."""
    conn = await asyncpg.connect(url)
    try:
        application = f"product-sync owner {owner.owner_id}"
        pid = await conn.fetchval("SELECT pid FROM pg_stat_activity WHERE application_name = $1", application)
        assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await conn.close()


async def test_a_run_started_on_one_replica_is_the_409_of_the_other(postgres_url: str) -> None:
    async with replica(postgres_url) as (first, _), replica(postgres_url) as (second, _):
        run = await first.start_run("admin", "feed")
        assert TIMESTAMP.match(run.started_at) and run.heartbeat_at == run.started_at
        with pytest.raises(RunAlreadyRunning) as caught:
            await second.start_run("ci", "feed")
        assert (caught.value.running.id, caught.value.running.started_at) == (run.id, run.started_at)
        await first.record_progress(run.id, BatchCounts(created=3, processed=3, total=9), [])
        finished = await first.finish_run(run.id, "success")
        assert (
            finished is not None
            and finished.duration_s is not None
            and TIMESTAMP.match(finished.finished_at or "")
        )
        assert await second.finish_run(run.id, "error", error_message="late") is None  # final
        snapshot = await second.snapshot()
        assert snapshot.totals["success"].runs == 1 and snapshot.totals["success"].created == 3


async def test_an_owner_cut_off_writes_nothing_more_and_its_run_is_recovered_elsewhere(
    postgres_url: str,
) -> None:
    async with replica(postgres_url) as (cut, owner), replica(postgres_url) as (other, _):
        run = await cut.start_run("admin", "feed")
        await cut.record_progress(run.id, BatchCounts(created=5, processed=5), [])
        await cut_session_of(postgres_url, owner)

        assert await cut.owner_lost()
        with pytest.raises(RunNoLongerRunning):  # the guard in the batch's own transaction
            await cut.record_progress(run.id, BatchCounts(created=7, processed=7), [])
        with pytest.raises(RunNoLongerRunning):
            await cut.heartbeat(run.id)
        recovered = await other.current_status()
        assert recovered is not None and recovered.id == run.id
        assert (recovered.status, recovered.error_message, recovered.created) == (
            "error",
            INTERRUPTED_MESSAGE,
            5,
        )

        lost_id = owner.owner_id
        again = await cut.start_run("admin", "feed")  # under a new identity, with a new lock
        assert again.owner != lost_id and again.owner == owner.owner_id and not await cut.owner_lost()
        assert await other.current_status() == again  # alive: left alone


async def test_a_live_replica_with_a_stale_heartbeat_is_failed_as_stalled(postgres_url: str) -> None:
    async with replica(postgres_url) as (hung, _), replica(postgres_url, stall_timeout_s=0.01) as (other, _):
        run = await hung.start_run("admin", "feed")
        await asyncio.sleep(0.05)  # no progress for longer than the other replica's stall timeout
        recovered = await other.recover_dead_runs()
        assert recovered is not None and recovered.id == run.id
        row = await other.get_run(run.id)
        assert row is not None and row.status == "error"
        assert row.error_message is not None and row.error_message.startswith("Sync stalled")


async def test_a_status_read_recovers_a_dead_run_without_waiting_for_another_writer(
    postgres_url: str,
) -> None:
    patient = replica(postgres_url, hold_timeout_s=60)
    async with replica(postgres_url) as (dying, owner), patient as (other, _):
        run = await dying.start_run("admin", "feed")
        await cut_session_of(postgres_url, owner)  # its owner gone: the run is dead
        writer = await asyncpg.connect(postgres_url)
        try:
            async with writer.transaction():  # another replica in the middle of a write, for a while
                await writer.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY)
                # Answered as the row stands, not after the write (or the hold timeout, a minute here).
                found = await asyncio.wait_for(other.current_status(), 10)
                assert found is not None and (found.id, found.status) == (run.id, "running")
        finally:
            await writer.close()
        recovered = await other.current_status()  # the lock is free: the next status read recovers it
        assert recovered is not None and (recovered.id, recovered.status) == (run.id, "error")
        assert recovered.error_message == INTERRUPTED_MESSAGE


async def test_retention_prunes_old_runs_and_errors_but_never_the_newest_or_a_writer(
    postgres_url: str,
) -> None:
    async with replica(postgres_url) as (ledger, _):
        first = await ledger.start_run("admin", "feed")
        await ledger.record_progress(
            first.id, BatchCounts(errors=1, processed=1), [ItemError(0, "9", "price: must be >= 0")]
        )
        await ledger.finish_run(first.id, "success")
        writer = await ledger.start_run("admin", "feed")
        async with ledger.batch(writer.id) as batch:  # a run a product still names must stay
            await batch.execute(
                "INSERT INTO categories (handle, name, created_run, created_at) VALUES ('c', 'C', ?, ?)",
                (writer.id, writer.started_at),
            )
            batch.record(BatchCounts(categories_created=1), [])
        await ledger.finish_run(writer.id, "success")
        newest = await ledger.start_run("admin", "feed")
        await ledger.finish_run(newest.id, "success")
        conn = await asyncpg.connect(postgres_url)
        try:  # all of them ten days old, as an auditor's clock would see them
            await conn.execute("UPDATE run_errors SET recorded_at = now() - interval '10 days'")
            await conn.execute("ALTER TABLE runs DISABLE TRIGGER runs_finished_are_final")
            await conn.execute("UPDATE runs SET started_at = started_at - interval '10 days'")
            await conn.execute("ALTER TABLE runs ENABLE TRIGGER runs_finished_are_final")
        finally:
            await conn.close()

        assert await ledger.prune(error_days=7, run_days=7) == (1, 1)
        remaining = [run.id for run in await ledger.list_runs(10, None, None)]
        assert remaining == [newest.id, writer.id]  # the newest and the one the catalog names stay
        assert await ledger.list_run_errors(first.id, 10, None) == []
