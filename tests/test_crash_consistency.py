"""Killing the service mid-sync, SQLite-style: after every crash the file is sound and the ledger true.

A 100,000-product feed is synced by a real service process that is SIGKILLed at 20 moments chosen by a
seeded random generator (reproducible), then restarted. After each restart: ``PRAGMA integrity_check``
passes, the killed run is recorded as interrupted, and every run's counters equal what the catalog holds
from it. A last, uninterrupted run converges the catalog to the feed exactly: nothing lost, nothing
duplicated. SIGTERM gets its own test: recorded as a shutdown, exit within the stop timeout.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path
from typing import Any

import pytest

from service.ledger.records import INTERRUPTED_MESSAGE, SHUTDOWN_MESSAGE
from tests.catalog_checks import (
    assert_ledger_matches_catalog,
    catalog,
    expected_catalog,
    integrity_check,
    open_db,
    run_row,
    running_rows,
)
from tests.faults import FaultUpstream, fault_upstream
from tests.reliability_report import ReliabilityReport
from tests.service_process import ServiceProcess
from tests.upstream import make_product

SEED = 20260107
KILLS = 20
FEED_SIZE = 100_000


def make_feed(size: int, version: int = 0, changed: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """The feed; products in ``changed`` carry a price moved by ``version`` (so later runs update)."""
    return [
        make_product(i, price=round(i % 97 + 0.99 + (version if i in changed else 0), 2))
        for i in range(1, size + 1)
    ]


def start_service(db_path: Path, upstream: FaultUpstream, log: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(
        db_path,
        upstream.products_url,
        log,
        SYNC_PAGE_SIZE="1000",
        SYNC_BATCH_SIZE="1000",
        SYNC_READ_TIMEOUT_S="10",
        **env,
    )


def run_ids(db_path: Path) -> list[int]:
    with open_db(db_path) as conn:
        return [int(row[0]) for row in conn.execute("SELECT id FROM runs ORDER BY id")]


def assert_every_run_matches_the_catalog(db_path: Path, reliability: ReliabilityReport) -> None:
    ids = run_ids(db_path)
    for run_id in ids:
        # A later run may have updated a product again, moving its updated_run: exact only for the newest.
        assert_ledger_matches_catalog(db_path, run_id, latest_writer=run_id == ids[-1])
        reliability.ledger_catalog_checks_passed += 1


async def wait_processed(service: ServiceProcess, run_id: int, target: int) -> dict[str, Any]:
    """Poll until the run has committed at least ``target`` items, or has ended."""
    while True:
        data = await service.status()
        assert data["runId"] == run_id, data
        if not data["isRunning"] or data["progress"]["processed"] >= target:
            return data
        await asyncio.sleep(0.02)


async def run_to_end(service: ServiceProcess, timeout_s: float = 30) -> dict[str, Any]:
    code, body = await service.request("POST", "/admin/sync/trigger")
    assert code == 200, body
    run_id = body["data"]["runId"]
    return await service.wait_status(lambda d: d["runId"] == run_id and not d["isRunning"], timeout_s)


@pytest.mark.slow
async def test_twenty_sigkills_across_a_100k_run_lose_nothing(
    tmp_path: Path, reliability: ReliabilityReport
) -> None:
    rng = random.Random(SEED)
    db_path = tmp_path / "sync.db"
    changed: frozenset[int] = frozenset()
    with fault_upstream(make_feed(FEED_SIZE)) as upstream:
        killed_run: int | None = None
        for kill in range(KILLS + 1):
            service = await start_service(db_path, upstream, tmp_path / f"service{kill}.log").start()
            try:
                if killed_run is not None:
                    # Recovered at start-up: the first status answer already tells the truth.
                    data = await service.status()
                    assert not data["isRunning"], data
                    row = run_row(db_path, killed_run)
                    if row["status"] == "error":
                        assert row["error_message"] == INTERRUPTED_MESSAGE, row
                        reliability.runs_recovered += 1
                    else:  # the kill came after the run had finished: its outcome stands
                        assert row["status"] == "success", row
                    assert integrity_check(db_path) == "ok"
                    reliability.integrity_checks_passed += 1
                    assert running_rows(db_path) == 0
                    assert_every_run_matches_the_catalog(db_path, reliability)
                if kill == KILLS:
                    break
                if kill % 5 == 4:  # the feed changes now and then, so runs have updates to lose
                    changed = frozenset(rng.sample(range(1, FEED_SIZE + 1), 1000))
                    upstream.products = make_feed(FEED_SIZE, kill, changed)
                code, body = await service.request("POST", "/admin/sync/trigger")
                assert code == 200, body
                killed_run = body["data"]["runId"]
                await wait_processed(service, killed_run, rng.randrange(0, FEED_SIZE))
                await asyncio.sleep(rng.uniform(0, 0.3))  # anywhere inside the next batch
                service.send_signal(signal.SIGKILL)
                assert await service.wait_exit() == -signal.SIGKILL
                reliability.runs_interrupted += 1
            finally:
                if kill == KILLS:
                    final = await run_to_end(service, timeout_s=300)
                await service.stop()
    reliability.fault("SIGKILL at random moments of a 100k-product run")

    assert final["lastStatus"] == "success", final
    stored = catalog(db_path)
    expected = expected_catalog(upstream.products)
    lost = set(expected) - set(stored)
    reliability.items_lost += len(lost)
    assert not lost
    assert stored == expected  # same ids, titles, prices, descriptions: nothing extra, nothing stale
    assert integrity_check(db_path) == "ok"
    reliability.integrity_checks_passed += 1
    assert_every_run_matches_the_catalog(db_path, reliability)
    with open_db(db_path) as conn:
        (created_total,) = conn.execute("SELECT sum(created) FROM runs").fetchone()
    assert created_total == FEED_SIZE  # each product created exactly once across all the crashes


async def test_sigterm_mid_run_records_a_shutdown_and_leaves_nothing_half_written(
    tmp_path: Path, reliability: ReliabilityReport
) -> None:
    db_path = tmp_path / "sync.db"
    shutdown_timeout_s = 5.0
    with fault_upstream(make_feed(10_000)) as upstream:
        service = await start_service(
            db_path, upstream, tmp_path / "service.log", SYNC_SHUTDOWN_TIMEOUT_S=str(shutdown_timeout_s)
        ).start()
        try:
            code, body = await service.request("POST", "/admin/sync/trigger")
            assert code == 200
            run_id = body["data"]["runId"]
            data = await wait_processed(service, run_id, 2000)
            assert data["isRunning"], "the run ended before SIGTERM could interrupt it"
            loop = asyncio.get_running_loop()
            sent_at = loop.time()
            service.send_signal(signal.SIGTERM)
            assert await service.wait_exit(timeout_s=shutdown_timeout_s + 5) == 0
            assert loop.time() - sent_at < shutdown_timeout_s
        finally:
            await service.stop()
        reliability.fault("SIGTERM mid-run")
        reliability.runs_interrupted += 1
        row = run_row(db_path, run_id)
        assert (row["status"], row["error_message"]) == ("error", SHUTDOWN_MESSAGE)
        assert 2000 <= row["processed"] < 10_000
        assert integrity_check(db_path) == "ok"
        reliability.integrity_checks_passed += 1
        assert_ledger_matches_catalog(db_path, run_id)
        reliability.ledger_catalog_checks_passed += 1
        assert len(catalog(db_path)) == row["created"]

        again = await start_service(db_path, upstream, tmp_path / "service2.log").start()
        try:
            data = await run_to_end(again)
        finally:
            await again.stop()
        assert data["lastStatus"] == "success"
        assert data["stats"]["unchanged"] == row["created"]
        assert catalog(db_path) == expected_catalog(upstream.products)
        reliability.runs_recovered += 1
