"""Every upstream fault against one real service process (``python -m service serve``).

For each fault: the run ends as an error whose message names the fault, status keeps answering
within 100 ms while it happens, the process's peak memory stays bounded, what was committed before
the fault agrees with the ledger, and once the upstream is healthy again the next run succeeds and
the catalog equals the feed. One process lives through the whole matrix, as a deployment would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.catalog_checks import (
    assert_ledger_matches_catalog,
    catalog,
    expected_catalog,
    integrity_check,
    open_db,
    running_rows,
)
from tests.conftest import AUTH
from tests.faults import RETRY_AFTER_S, Fault, FaultUpstream
from tests.reliability_report import ReliabilityReport
from tests.service_process import ServiceProcess
from tests.upstream import make_product

pytestmark = pytest.mark.asyncio(loop_scope="module")

FEED_SIZE = 194
PAGE_SIZE = 50
STATUS_BOUND_MS = 100.0
# The service idles at ~60 MiB; a fault that made it buffer a 50 MB answer would pass this.
PEAK_RSS_BOUND_MIB = 160.0
ATTEMPTS = 3

# fault, first page it hits (skip), what the run's error message must say
MATRIX: list[tuple[Fault, int, str]] = [
    (Fault.REFUSE, 0, "Cannot connect to upstream 127.0.0.1:{port} (Connection refused) after 3 attempts"),
    (Fault.STALL_BEFORE_BODY, 50, "Network timeout after 3 attempts (page skip=50)"),
    (Fault.STALL_MID_BODY, 100, "Network timeout after 3 attempts (page skip=100)"),
    (Fault.STATUS_500, 0, "Upstream answered 500 after 3 attempts (page skip=0)"),
    (Fault.STATUS_502, 50, "Upstream answered 502 after 3 attempts (page skip=50)"),
    (Fault.STATUS_503, 150, "Upstream answered 503 after 3 attempts (page skip=150)"),
    (Fault.STATUS_429, 0, "Upstream answered 429 after 3 attempts (page skip=0)"),
    (Fault.STATUS_429_RETRY_AFTER, 50, "Upstream answered 429 after 3 attempts (page skip=50)"),
    (Fault.STATUS_503_RETRY_AFTER, 0, "Upstream answered 503 after 3 attempts (page skip=0)"),
    (Fault.CUT_MID_JSON, 50, "Upstream connection closed mid-response after 3 attempts (page skip=50)"),
    (Fault.INVALID_UTF8, 0, "Upstream sent invalid JSON (page skip=0): "),
    (
        Fault.HUGE_LINE,
        0,
        "The first product alone is larger than the page limit of 4194304 bytes (page skip=0)",
    ),
    (Fault.CONTENT_LENGTH_LONG, 0, "Upstream connection closed mid-response after 3 attempts (page skip=0)"),
    (Fault.CONTENT_LENGTH_SHORT, 50, "Upstream sent a malformed HTTP answer (page skip=50): Bad status line"),
    (Fault.TOTAL_CHANGES, 50, f"Upstream total changed from {FEED_SIZE} to {FEED_SIZE + 7} during the run"),
    (Fault.REPEAT_PAGE, 100, "Upstream repeated the previous page (page skip=100)"),
    (Fault.REDIRECT_LOOP, 50, "Upstream redirected too many times (page skip=50)"),
    (Fault.HTML, 50, "Upstream sent invalid JSON (page skip=50, Content-Type: text/html): "),
]
# A second phrase that must appear for faults whose message could otherwise be vague.
NAMES: dict[Fault, str] = {
    Fault.INVALID_UTF8: "UTF-8",
}


def feed_version(version: int) -> list[dict[str, Any]]:
    """The feed, with prices moved by ``version`` so a healed run has real updates to write."""
    return [make_product(i, price=round(i % 97 + 0.99 + version, 2)) for i in range(1, FEED_SIZE + 1)]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    server = FaultUpstream(feed_version(0)).start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(
    tmp_path_factory: pytest.TempPathFactory, upstream: FaultUpstream
) -> AsyncIterator[ServiceProcess]:
    workdir = tmp_path_factory.mktemp("faults")
    process = ServiceProcess(
        workdir / "sync.db",
        upstream.products_url,
        workdir / "service.log",
        SYNC_PAGE_SIZE=str(PAGE_SIZE),
        SYNC_RETRY_ATTEMPTS=str(ATTEMPTS),
        SYNC_RETRY_BASE_DELAY_S="0.02",
        SYNC_RETRY_MAX_DELAY_S=str(RETRY_AFTER_S + 1),
        SYNC_READ_TIMEOUT_S="0.4",
        SYNC_CONNECT_TIMEOUT_S="1",
        SYNC_MAX_LINE_BYTES=str(64 * 1024),
    )
    await process.start()
    yield process
    await process.stop()


def assert_responsive(latencies: list[float], reliability: ReliabilityReport) -> None:
    """Status answered within 100 ms while the fault went on.

    The machine is shared (2 cores, often at a load of 8 from other suites), so single answers can be
    delayed by the scheduler by a few hundred ms: the typical (median) answer must be under 100 ms,
    and none may take a second, which would be a blocked event loop, the bug this guards against.
    """
    median = statistics.median(latencies)
    reliability.latency(max(latencies), median)
    assert median < STATUS_BOUND_MS, sorted(latencies)
    assert max(latencies) < 1000, sorted(latencies)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def reset_peak_rss(pid: int) -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS, so each fault gets its own peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def run_and_watch(service: ServiceProcess) -> tuple[dict[str, Any], list[float]]:
    """Trigger a run and poll status every ~20 ms on a dedicated connection until it ends.

    Returns the final status and every poll's response time in ms (the first, which opens the
    connection, is left out when there are others).
    """
    code, body = await service.request("POST", "/admin/sync/trigger")
    assert code == 200, body
    run_id = body["data"]["runId"]
    latencies: list[float] = []
    deadline = time.monotonic() + 60
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, headers=AUTH) as session:
        while True:
            started = time.perf_counter()
            async with session.get(f"{service.base_url}/admin/sync/status") as response:
                assert response.status == 200
                data: dict[str, Any] = (await response.json())["data"]
            latencies.append((time.perf_counter() - started) * 1000)
            if data["runId"] == run_id and not data["isRunning"]:
                return data, latencies[1:] or latencies  # the run may end before a second poll
            assert time.monotonic() < deadline, f"run {run_id} did not end: {data}\n{service.log_text()}"
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(("fault", "from_skip", "message"), MATRIX, ids=[f.name.lower() for f, *_ in MATRIX])
async def test_fault_fails_the_run_clearly_and_the_next_run_recovers(
    service: ServiceProcess,
    upstream: FaultUpstream,
    reliability: ReliabilityReport,
    fault: Fault,
    from_skip: int,
    message: str,
) -> None:
    assert service.process is not None
    pid = service.process.pid
    db_path = Path(service._env["SYNC_DB_PATH"])
    reliability.fault(f"upstream: {fault.value}")

    upstream.inject(fault, from_skip)
    upstream.request_times.clear()
    upstream.page_request_times.clear()
    reset_peak_rss(pid)
    data, latencies = await run_and_watch(service)
    peak = peak_rss_mib(pid)

    assert data["lastStatus"] == "error", data
    assert message.format(port=upstream.port) in data["lastError"]
    if fault in NAMES:
        assert NAMES[fault].lower() in data["lastError"].lower(), data["lastError"]
    if from_skip:  # every page before the fault was committed, even those still in the pipeline
        assert data["progress"]["processed"] == from_skip, data
    assert_ledger_matches_catalog(db_path, data["runId"])
    assert integrity_check(db_path) == "ok"
    assert running_rows(db_path) == 0
    reliability.runs_failed_cleanly += 1
    reliability.integrity_checks_passed += 1
    reliability.ledger_catalog_checks_passed += 1

    assert_responsive(latencies, reliability)
    reliability.peak_rss(peak)
    assert peak < PEAK_RSS_BOUND_MIB

    if fault in (Fault.STATUS_429_RETRY_AFTER, Fault.STATUS_503_RETRY_AFTER):
        times = upstream.page_request_times[from_skip][-ATTEMPTS:]  # the faulting page's own attempts
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= RETRY_AFTER_S * 0.95, gaps  # waited as told, not the 20 ms backoff

    # Healed, with changed prices: the next run succeeds and the catalog is exactly the feed.
    version = len(upstream.request_times)
    upstream.products = feed_version(version)
    upstream.heal()
    healed, _ = await run_and_watch(service)
    assert healed["lastStatus"] == "success", healed
    assert healed["stats"]["errors"] == 0
    assert catalog(db_path) == expected_catalog(upstream.products)
    assert_ledger_matches_catalog(db_path, healed["runId"])
    reliability.recoveries_succeeded += 1
    reliability.items_lost += len(set(expected_catalog(upstream.products)) - set(catalog(db_path)))


@contextlib.asynccontextmanager
async def ndjson_service(tmp_path: Path, upstream: FaultUpstream) -> AsyncIterator[ServiceProcess]:
    """A service of its own reading the fault upstream's NDJSON feed; the upstream is healed after."""
    process = ServiceProcess(
        tmp_path / "sync.db",
        upstream.feed_url,
        tmp_path / "service.log",
        SYNC_SOURCE_FORMAT="ndjson",
        SYNC_MAX_LINE_BYTES=str(64 * 1024),
        SYNC_RETRY_BASE_DELAY_S="0.02",
    )
    await process.start()
    try:
        yield process
    finally:
        upstream.heal()
        await process.stop()


@pytest.mark.parametrize(
    ("fault", "message"),
    [(Fault.CUT_MID_JSON, "Upstream connection broke while reading the feed after line 10")],
    ids=["cut_mid_json"],
)
async def test_ndjson_feed_faults_fail_clearly_and_recover(
    tmp_path: Path, upstream: FaultUpstream, reliability: ReliabilityReport, fault: Fault, message: str
) -> None:
    reliability.fault(f"upstream (NDJSON): {fault.value}")
    async with ndjson_service(tmp_path, upstream) as ndjson:
        assert ndjson.process is not None
        upstream.products = feed_version(0)
        upstream.inject(fault)
        reset_peak_rss(ndjson.process.pid)
        data, latencies = await run_and_watch(ndjson)
        peak = peak_rss_mib(ndjson.process.pid)
        assert data["lastStatus"] == "error" and data["lastError"].startswith(message), data
        assert_ledger_matches_catalog(tmp_path / "sync.db", data["runId"])
        assert integrity_check(tmp_path / "sync.db") == "ok"
        reliability.runs_failed_cleanly += 1
        reliability.integrity_checks_passed += 1
        reliability.ledger_catalog_checks_passed += 1
        if latencies:
            assert_responsive(latencies, reliability)
        reliability.peak_rss(peak)
        assert peak < PEAK_RSS_BOUND_MIB

        upstream.heal()
        healed, _ = await run_and_watch(ndjson)
        assert healed["lastStatus"] == "success", healed
        assert catalog(tmp_path / "sync.db") == expected_catalog(upstream.products)
        reliability.recoveries_succeeded += 1


async def test_ndjson_line_over_the_limit_is_an_item_error_read_in_bounded_memory(
    tmp_path: Path, upstream: FaultUpstream, reliability: ReliabilityReport
) -> None:
    """A 50 MB line is one bad item: its bytes are dropped as they arrive, and the feed goes on."""
    reliability.fault(f"upstream (NDJSON): {Fault.HUGE_LINE.value}")
    async with ndjson_service(tmp_path, upstream) as ndjson:
        assert ndjson.process is not None
        upstream.products = feed_version(0)
        upstream.inject(Fault.HUGE_LINE)
        reset_peak_rss(ndjson.process.pid)
        data, latencies = await run_and_watch(ndjson)
        peak = peak_rss_mib(ndjson.process.pid)
        assert data["lastStatus"] == "success", data
        # The over-long line swallowed the 11th product's line: that one item is the error.
        assert data["stats"]["errors"] == 1 and data["stats"]["created"] == FEED_SIZE - 1, data
        with open_db(tmp_path / "sync.db") as conn:
            errors = conn.execute("SELECT position, external_id, reason FROM run_errors").fetchall()
        assert errors == [(10, None, "Feed line 11 is longer than the limit of 65536 bytes")]
        expected = expected_catalog(upstream.products)
        del expected[str(upstream.products[10]["id"])]
        assert catalog(tmp_path / "sync.db") == expected
        assert_ledger_matches_catalog(tmp_path / "sync.db", data["runId"])
        reliability.integrity_checks_passed += 1
        reliability.ledger_catalog_checks_passed += 1
        if latencies:
            assert_responsive(latencies, reliability)
        reliability.peak_rss(peak)
        assert peak < PEAK_RSS_BOUND_MIB
