"""Several service processes on one PostgreSQL, as replicas on several hosts would run.

Real processes (``python -m service serve``), a real cluster, real signals: one run among many
simultaneous triggers, a SIGKILLed owner recovered by the next status answer of another replica, an
owner whose session the server cut fenced off from the ledger, and a server restart in the middle of a
run that the service rides out without a restart of its own.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.throwaway_postgres import PostgresCluster, running_cluster
from service.database.postgres import WRITE_LOCK_KEY
from service.ledger.records import INTERRUPTED_MESSAGE
from service.sync.runner import OWNER_LOST_MESSAGE
from tests.postgres_rows import assert_pg_ledger_matches_catalog, pg_query, pg_scalar
from tests.service_process import ServiceProcess, free_port, ticks_taken_elsewhere
from tests.upstream import FeedControl, make_product

pytestmark = pytest.mark.postgres

Spawn = Callable[..., ServiceProcess]

# A lock session that the server ends shows in pg_locks no more; the owner id is its application name.
OWNER_SESSION = """
SELECT pid FROM pg_stat_activity WHERE application_name = 'product-sync owner ' || $1
"""

# The session holding the write lock (a bigint advisory lock: its high and low halves), if any.
WRITE_LOCK_HOLDER = """
SELECT (
    SELECT pid FROM pg_locks JOIN pg_stat_activity USING (pid)
    WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1
      AND state = $3
)
"""


@pytest.fixture
async def spawn(tmp_path: Path, upstream_url: str, postgres_url: str) -> AsyncIterator[Spawn]:
    """Service processes on the test's PostgreSQL database (none of them has a file of its own)."""
    started: list[ServiceProcess] = []

    def make(url: str = postgres_url, **env: str) -> ServiceProcess:
        service = ServiceProcess(
            tmp_path / f"unused{len(started)}.db",
            upstream_url,
            tmp_path / f"replica{len(started)}.log",
            SYNC_DATABASE_URL=url,
            **env,
        )
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


def held(data: dict[str, Any]) -> bool:
    """The run is in progress and has committed its first page (the feed's gate holds the rest)."""
    return data["isRunning"] is True and data["stats"]["created"] == 50


async def test_three_hundred_triggers_over_three_replicas_start_exactly_one_run(
    spawn: Spawn, feed: FeedControl, postgres_url: str
) -> None:
    feed.gate = asyncio.Event()
    replicas = [await spawn().start() for _ in range(3)]
    results = await asyncio.gather(
        *(replica.request("POST", "/admin/sync/trigger") for replica in replicas for _ in range(100))
    )
    codes = [code for code, _ in results]
    assert codes.count(200) == 1 and codes.count(409) == 299, sorted(codes)
    winner = next(body for code, body in results if code == 200)["data"]
    for code, body in results:
        if code == 409:  # the contract's 409 names the running run, whichever replica answered
            assert body["data"] == {"startedAt": winner["startedAt"], "runId": winner["runId"]}
    assert await pg_scalar(postgres_url, "SELECT count(*) FROM runs WHERE status = 'running'") == 1

    feed.gate.set()
    for replica in replicas:  # every replica reports the one run's end
        data = await replica.wait_status(lambda d: d["isRunning"] is False)
        assert (data["runId"], data["lastStatus"]) == (winner["runId"], "success")
    await assert_pg_ledger_matches_catalog(postgres_url, winner["runId"])
    assert await pg_scalar(postgres_url, "SELECT count(*) FROM products") == 194


async def test_a_sigkilled_owner_is_recovered_by_the_next_status_answer_of_another_replica(
    spawn: Spawn, feed: FeedControl, postgres_url: str
) -> None:
    feed.gate = asyncio.Event()
    owner, other = await spawn().start(), await spawn().start()
    code, body = await owner.request("POST", "/admin/sync/trigger")
    assert code == 200
    killed = body["data"]["runId"]
    await owner.wait_status(held)
    assert held(await other.status())  # a live owner's run is left alone

    owner.send_signal(signal.SIGKILL)
    assert await owner.wait_exit() == -signal.SIGKILL
    # The server ends the dead process's session as its socket closes; the lock goes with it at once.
    data = await other.wait_status(lambda d: d["isRunning"] is False, timeout_s=2)
    assert (data["runId"], data["lastStatus"], data["lastError"]) == (killed, "error", INTERRUPTED_MESSAGE)
    assert data["stats"]["created"] == 50  # exactly what the killed run committed

    code, body = await other.request("POST", "/admin/sync/trigger")
    assert code == 200
    feed.gate.set()
    data = await other.wait_status(lambda d: d["isRunning"] is False and d["runId"] == body["data"]["runId"])
    assert data["lastStatus"] == "success"
    assert (data["stats"]["created"], data["stats"]["unchanged"]) == (144, 50)
    for run_id in (killed, body["data"]["runId"]):
        await assert_pg_ledger_matches_catalog(postgres_url, run_id)
    assert await pg_scalar(postgres_url, "SELECT count(*) FROM products") == 194


async def test_an_owner_cut_off_by_the_server_is_recovered_elsewhere_and_writes_nothing_more(
    spawn: Spawn, feed: FeedControl, postgres_url: str
) -> None:
    feed.gate = asyncio.Event()
    # The owner's watchdog looks rarely, so what stops its writes is the ledger's own guard.
    owner = await spawn(SYNC_WATCHDOG_INTERVAL_S="60").start()
    other = await spawn().start()
    code, body = await owner.request("POST", "/admin/sync/trigger")
    assert code == 200
    cut = body["data"]["runId"]
    await owner.wait_status(held)
    owner_id = await pg_scalar(postgres_url, "SELECT owner FROM runs WHERE id = $1", cut)
    (session,) = await pg_query(postgres_url, OWNER_SESSION, owner_id)
    assert await pg_scalar(postgres_url, "SELECT pg_terminate_backend($1)", session["pid"])

    # The process lives on, but its lock went with its session: another replica recovers the run.
    data = await other.wait_status(lambda d: d["isRunning"] is False, timeout_s=5)
    assert (data["runId"], data["lastStatus"], data["lastError"]) == (cut, "error", INTERRUPTED_MESSAGE)

    feed.gate.set()  # the cut-off owner's sync reads on and tries to write its next batches
    await asyncio.sleep(1.0)
    (row,) = await pg_query(postgres_url, "SELECT status, created, processed, error_message FROM runs")
    assert dict(row) == {
        "status": "error",
        "created": 50,
        "processed": 50,
        "error_message": INTERRUPTED_MESSAGE,
    }
    assert await pg_scalar(postgres_url, "SELECT count(*) FROM products") == 50
    await assert_pg_ledger_matches_catalog(postgres_url, cut)

    # The cut-off process itself starts the next run, under a new identity with a new lock.
    code, body = await owner.request("POST", "/admin/sync/trigger")
    assert code == 200, body
    data = await owner.wait_status(lambda d: d["isRunning"] is False and d["runId"] == body["data"]["runId"])
    assert data["lastStatus"] == "success", data
    new_owner = await pg_scalar(postgres_url, "SELECT owner FROM runs WHERE id = $1", body["data"]["runId"])
    assert new_owner != owner_id
    await assert_pg_ledger_matches_catalog(postgres_url, body["data"]["runId"])
    assert await pg_scalar(postgres_url, "SELECT count(*) FROM products") == 194


async def freeze_inside_a_batch(process: ServiceProcess, url: str) -> int:
    """SIGSTOP the process between two statements of a transaction that holds the write lock; return
    that session. (Frozen in the middle of sending a COPY's rows is another case: the server cannot end
    that session, see test_postgres_database.py.)"""
    halves = (WRITE_LOCK_KEY >> 32, WRITE_LOCK_KEY & 0xFFFFFFFF)
    for _ in range(500):
        process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.02)
        holder = await pg_scalar(url, WRITE_LOCK_HOLDER, *halves, "idle in transaction")
        if holder is not None:
            await asyncio.sleep(0.2)  # not a commit that was already on its way: the lock stays held
            if await pg_scalar(url, WRITE_LOCK_HOLDER, *halves, "idle in transaction") == holder:
                return int(holder)
        process.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.01)
    raise AssertionError("the process was never stopped inside a batch")


async def test_an_owner_frozen_inside_a_batch_keeps_no_replica_waiting_and_writes_nothing_more(
    spawn: Spawn, feed: FeedControl, postgres_url: str
) -> None:
    # SIGSTOP, as a paused VM or a process swapped out: alive (its lock session stays), but silent
    # with a transaction open and the write lock held. Left to itself, no replica could write again.
    feed.products = [make_product(i) for i in range(1, 20_001)]
    env = {"SYNC_STALL_TIMEOUT_S": "2", "SYNC_DATABASE_HOLD_TIMEOUT_S": "1"}
    owner, other = await spawn(**env).start(), await spawn(**env).start()
    code, body = await owner.request("POST", "/admin/sync/trigger")
    assert code == 200
    frozen = body["data"]["runId"]
    await owner.wait_status(lambda d: d["stats"]["created"] > 0)
    session = await freeze_inside_a_batch(owner, postgres_url)
    try:
        # The server ends the silent session (its batch rolls back, the lock is free), and once the
        # run has made no progress for the stall timeout, the other replica's status recovers it.
        data = await asyncio.wait_for(other.wait_status(lambda d: d["isRunning"] is False), 60)
        assert (data["runId"], data["lastStatus"]) == (frozen, "error")
        assert data["lastError"].startswith("Sync stalled"), data
        gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
        assert await pg_scalar(postgres_url, gone, session) == 0
        await assert_pg_ledger_matches_catalog(postgres_url, frozen)

        # Still frozen: another replica runs the next sync to the end.
        code, body = await asyncio.wait_for(other.request("POST", "/admin/sync/trigger"), 30)
        assert code == 200, body
        after = body["data"]["runId"]
        data = await other.wait_status(lambda d: d["isRunning"] is False and d["runId"] == after, 120)
        assert data["lastStatus"] == "success", data
    finally:
        owner.send_signal(signal.SIGCONT)

    # Woken, the old owner finds its session gone and its run finished: it writes nothing more.
    (before,) = await pg_query(postgres_url, "SELECT * FROM runs WHERE id = $1", frozen)
    await owner.wait_status(lambda d: d["runId"] == after)
    await asyncio.sleep(1.0)
    (row,) = await pg_query(postgres_url, "SELECT * FROM runs WHERE id = $1", frozen)
    assert dict(row) == dict(before)
    await assert_pg_ledger_matches_catalog(postgres_url, frozen, latest_writer=False)
    await assert_pg_ledger_matches_catalog(postgres_url, after)
    assert await pg_scalar(postgres_url, "SELECT count(*) FROM products") == 20_000


async def test_replicas_on_a_schedule_start_one_run_per_tick(spawn: Spawn, postgres_url: str) -> None:
    env = {"SYNC_SCHEDULE": "* * * * * *", "SYNC_LOG_LEVEL": "DEBUG", "SYNC_SCHEDULE_CATCH_UP": "false"}
    replicas = [await spawn(**env).start() for _ in range(3)]
    deadline = asyncio.get_running_loop().time() + 30
    while await pg_scalar(postgres_url, "SELECT count(*) FROM schedule_ticks") < 6:
        assert asyncio.get_running_loop().time() < deadline, "six ticks never came"
        await asyncio.sleep(0.1)
    for replica in replicas:
        replica.send_signal(signal.SIGTERM)
        await replica.wait_exit()

    ticks = await pg_query(postgres_url, "SELECT due_at, outcome, run_id, claimed_by FROM schedule_ticks")
    started = sorted(tick["run_id"] for tick in ticks if tick["outcome"] == "started")
    scheduled = await pg_query(postgres_url, "SELECT id FROM runs WHERE started_via = 'schedule' ORDER BY id")
    assert started == [row["id"] for row in scheduled]  # every scheduled run is one tick's, each tick one run
    claimed_by = {tick["due_at"]: tick["claimed_by"] for tick in ticks}
    # Every replica woke for the ticks: each one a replica found taken was claimed by another one.
    assert ticks_taken_elsewhere(replicas, claimed_by) >= 6


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, to restart under a running service."""
    with running_cluster(free_port()) as cluster:
        yield cluster


async def test_a_server_restart_mid_run_is_a_named_error_and_the_next_run_succeeds(
    spawn: Spawn, feed: FeedControl, own_cluster: PostgresCluster
) -> None:
    feed.gate = asyncio.Event()
    url = own_cluster.url("postgres")
    service = await spawn(url).start()
    code, body = await service.request("POST", "/admin/sync/trigger")
    assert code == 200
    interrupted = body["data"]["runId"]
    await service.wait_status(held)

    own_cluster.stop()  # every session ends: the run's, the pool's, the owner lock's
    await asyncio.sleep(0.5)
    code, answer = await service.request("GET", "/admin/sync/status")
    assert code == 500 and answer["status"] == "error", answer  # the contract's error shape
    assert answer["message"].startswith(
        "Could not read the sync status: lost PostgreSQL at postgresql://***@"
    )
    code, answer = await service.request("GET", "/ready")
    assert code == 503 and answer["message"].startswith("Database unavailable: "), answer
    own_cluster.start()
    feed.gate.set()

    data = await service.wait_status(lambda d: d["runId"] == interrupted and d["isRunning"] is False)
    assert data["lastStatus"] == "error"
    assert data["lastError"] in {INTERRUPTED_MESSAGE, OWNER_LOST_MESSAGE} or data["lastError"].startswith(
        "Database error: lost PostgreSQL"
    ), data

    code, body = await service.request("POST", "/admin/sync/trigger")  # no restart of the service
    assert code == 200, body
    data = await service.wait_status(
        lambda d: d["isRunning"] is False and d["runId"] == body["data"]["runId"]
    )
    assert data["lastStatus"] == "success", data
    await assert_pg_ledger_matches_catalog(url, body["data"]["runId"])
    assert await pg_scalar(url, "SELECT count(*) FROM products") == 194
