"""The crash loop of ``test_crash_consistency`` on PostgreSQL: 20 SIGKILLs of a service across a
100,000-product run, each followed by a restart.

After each restart the first status answer already shows the killed run recovered as interrupted, no run
is left running, and every run's counters equal what the catalog holds from it; a last, uninterrupted run
converges the catalog to the feed exactly. Each product is created exactly once across all the crashes.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path
from typing import Any

import pytest

from service.ledger.records import INTERRUPTED_MESSAGE
from tests.catalog_checks import expected_catalog
from tests.faults import fault_upstream
from tests.postgres_rows import assert_pg_ledger_matches_catalog, pg_query
from tests.reliability_report import ReliabilityReport
from tests.service_process import ServiceProcess
from tests.test_crash_consistency import FEED_SIZE, KILLS, SEED, make_feed, run_to_end, wait_processed

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def assert_every_run_matches_the_catalog(url: str, reliability: ReliabilityReport) -> None:
    ids = [row["id"] for row in await pg_query(url, "SELECT id FROM runs ORDER BY id")]
    for run_id in ids:
        await assert_pg_ledger_matches_catalog(url, run_id, latest_writer=run_id == ids[-1])
        reliability.ledger_catalog_checks_passed += 1


async def catalog(url: str) -> dict[str, tuple[str, int, str]]:
    rows = await pg_query(url, "SELECT external_id, title, price_minor, description FROM products")
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def test_twenty_sigkills_across_a_100k_run_on_postgres_lose_nothing(
    tmp_path: Path, postgres_url: str, reliability: ReliabilityReport
) -> None:
    rng = random.Random(SEED)
    changed: frozenset[int] = frozenset()
    final: dict[str, Any] = {}
    with fault_upstream(make_feed(FEED_SIZE)) as upstream:
        killed_run: int | None = None
        for kill in range(KILLS + 1):
            service = ServiceProcess(
                tmp_path / "unused.db",
                upstream.products_url,
                tmp_path / f"service{kill}.log",
                SYNC_DATABASE_URL=postgres_url,
                SYNC_PAGE_SIZE="1000",
                SYNC_BATCH_SIZE="1000",
                SYNC_READ_TIMEOUT_S="10",
            )
            await service.start()
            try:
                if killed_run is not None:
                    data = await service.status()  # the very first answer tells the truth
                    assert not data["isRunning"], data
                    (row,) = await pg_query(postgres_url, "SELECT * FROM runs WHERE id = $1", killed_run)
                    if row["status"] == "error":
                        assert row["error_message"] == INTERRUPTED_MESSAGE, dict(row)
                        reliability.runs_recovered += 1
                    else:  # the kill came after the run had finished: its outcome stands
                        assert row["status"] == "success", dict(row)
                    (running,) = await pg_query(
                        postgres_url, "SELECT count(*) FROM runs WHERE status = 'running'"
                    )
                    assert running[0] == 0
                    await assert_every_run_matches_the_catalog(postgres_url, reliability)
                if kill == KILLS:
                    final = await run_to_end(service, timeout_s=300)
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
                await service.stop()
    reliability.fault("SIGKILL at random moments of a 100k-product run on PostgreSQL")

    assert final["lastStatus"] == "success", final
    stored = await catalog(postgres_url)
    expected = expected_catalog(upstream.products)
    lost = set(expected) - set(stored)
    reliability.items_lost += len(lost)
    assert not lost
    assert stored == expected  # same ids, titles, prices, descriptions: nothing extra, nothing stale
    await assert_every_run_matches_the_catalog(postgres_url, reliability)
    (created_total,) = await pg_query(postgres_url, "SELECT sum(created) FROM runs")
    assert created_total[0] == FEED_SIZE  # each product created exactly once across all the crashes
