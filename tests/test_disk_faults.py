"""Disk and database faults under a real service process: a file that cannot be written, a database
locked by another process past the busy timeout, a full disk (a size-limited tmpfs).

Each time: the trigger or the run fails with a message naming the fault, status keeps answering,
what was committed before is intact, and once the fault is gone the next run succeeds.
We run as root, so ``chmod 0444`` would not stop a write: the read-only file is made immutable with
``chattr +i`` (which also refuses writes through descriptors already open).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.catalog_checks import (
    assert_ledger_matches_catalog,
    catalog,
    expected_catalog,
    integrity_check,
    running_rows,
)
from tests.faults import FaultUpstream
from tests.reliability_report import ReliabilityReport
from tests.service_process import ServiceProcess
from tests.upstream import make_product

FEED = [make_product(i) for i in range(1, 195)]


@pytest.fixture
def upstream() -> Iterator[FaultUpstream]:
    server = FaultUpstream(FEED).start()
    yield server
    server.stop()


async def run_to_end(service: ServiceProcess) -> dict[str, object]:
    code, body = await service.request("POST", "/admin/sync/trigger")
    assert code == 200, body
    run_id = body["data"]["runId"]
    return await service.wait_status(lambda d: d["runId"] == run_id and not d["isRunning"])


async def first_good_run(db_path: Path, upstream: FaultUpstream, log: Path, **env: str) -> ServiceProcess:
    service = await ServiceProcess(db_path, upstream.products_url, log, **env).start()
    data = await run_to_end(service)
    assert data["lastStatus"] == "success", data
    assert catalog(db_path) == expected_catalog(FEED)
    return service


async def assert_status_answers(service: ServiceProcess) -> None:
    for _ in range(5):
        code, body = await service.request("GET", "/admin/sync/status")
        assert code == 200, body
        code, _ = await service.request("GET", "/health", headers={})
        assert code == 200


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@pytest.fixture
async def service_on_immutable_file(
    tmp_path: Path, upstream: FaultUpstream
) -> AsyncIterator[tuple[ServiceProcess, list[Path]]]:
    if shutil.which("chattr") is None:
        # A skip would count as a pass in CI; the fault must really be injected or the test fails.
        pytest.fail("chattr (e2fsprogs) is needed to make the database file read-only for root")
    db_path = tmp_path / "sync.db"
    service = await first_good_run(db_path, upstream, tmp_path / "service.log")
    files = [db_path, Path(f"{db_path}-wal")]
    try:
        chattr("+i", *files)
    except subprocess.CalledProcessError as exc:
        await service.stop()
        pytest.fail(f"this filesystem has no immutable flag: {exc.stderr!r}")
    try:
        yield service, files
    finally:
        chattr("-i", *files)
        await service.stop()


async def test_read_only_database_file_fails_the_trigger_clearly_and_loses_nothing(
    service_on_immutable_file: tuple[ServiceProcess, list[Path]],
    upstream: FaultUpstream,
    reliability: ReliabilityReport,
) -> None:
    service, files = service_on_immutable_file
    db_path = files[0]
    reliability.fault("database: read-only file")
    upstream.products = [make_product(i, price=5.0) for i in range(1, 195)]
    code, body = await service.request("POST", "/admin/sync/trigger")
    assert code == 500, body
    assert body["status"] == "error"
    assert body["message"].startswith("Could not start the sync: ")
    assert "disk I/O error" in body["message"] or "readonly" in body["message"], body
    await assert_status_answers(service)
    reliability.runs_failed_cleanly += 1

    chattr("-i", *files)
    assert integrity_check(db_path) == "ok"
    reliability.integrity_checks_passed += 1
    assert catalog(db_path) == expected_catalog(FEED)  # the committed catalog is untouched
    data = await run_to_end(service)
    assert data["lastStatus"] == "success", data
    assert catalog(db_path) == expected_catalog(upstream.products)
    reliability.recoveries_succeeded += 1


def hold_write_lock(db_path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes SQLite's write lock (BEGIN IMMEDIATE) and keeps it for ``seconds``."""
    script = (
        "import sqlite3, sys, time\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
        "conn.execute('ROLLBACK')\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(db_path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


async def test_database_locked_by_another_process_fails_clearly_then_recovers(
    tmp_path: Path, upstream: FaultUpstream, reliability: ReliabilityReport
) -> None:
    reliability.fault("database: locked by another process past the busy timeout")
    db_path = tmp_path / "sync.db"
    service = await first_good_run(db_path, upstream, tmp_path / "service.log", SYNC_BUSY_TIMEOUT_S="0.3")
    try:
        holder = hold_write_lock(db_path, 1.5)
        try:
            code, body = await service.request("POST", "/admin/sync/trigger")
            assert code == 500, body
            assert body["message"] == "Could not start the sync: database is locked", body
            await assert_status_answers(service)  # reads go on beside the lock (WAL)
        finally:
            holder.wait(10)
        reliability.runs_failed_cleanly += 1

        # Locked in the middle of a run: the batch fails, the run is recorded once the lock is gone.
        upstream.products = [make_product(i, price=7.0) for i in range(1, 195)]
        upstream.inject(upstream.fault.STALL_BEFORE_BODY, from_skip=50)
        code, body = await service.request("POST", "/admin/sync/trigger")
        assert code == 200, body
        run_id = body["data"]["runId"]
        await service.wait_status(lambda d: d["stats"]["updated"] == 50)
        holder = hold_write_lock(db_path, 1.5)
        upstream.heal()
        try:
            data = await service.wait_status(lambda d: d["runId"] == run_id and not d["isRunning"])
        finally:
            holder.wait(10)
        assert data["lastStatus"] == "error", data
        assert data["lastError"] == "Database error: database is locked", data
        assert_ledger_matches_catalog(db_path, run_id)
        assert integrity_check(db_path) == "ok"
        reliability.integrity_checks_passed += 1
        reliability.ledger_catalog_checks_passed += 1
        reliability.runs_failed_cleanly += 1

        data = await run_to_end(service)
        assert data["lastStatus"] == "success", data
        assert catalog(db_path) == expected_catalog(upstream.products)
        reliability.recoveries_succeeded += 1
    finally:
        await service.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: a real filesystem that fills up."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path: Path, leave_bytes: int) -> None:
    """Fill the filesystem of ``path`` until ``leave_bytes`` remain free."""
    stats = os.statvfs(path.parent)
    free = stats.f_bavail * stats.f_frsize
    with path.open("wb") as filler:
        filler.write(b"\0" * max(0, free - leave_bytes))


async def test_full_disk_fails_the_run_clearly_and_keeps_what_was_committed(
    small_disk: Path, tmp_path: Path, upstream: FaultUpstream, reliability: ReliabilityReport
) -> None:
    reliability.fault("disk full (size-limited tmpfs)")
    db_path = small_disk / "sync.db"
    service = await first_good_run(db_path, upstream, tmp_path / "service.log")
    try:
        fill(small_disk / "filler", leave_bytes=64 * 1024)
        before = catalog(db_path)
        big = [make_product(i, description="d" * 20_000) for i in range(1, 195)]
        upstream.products = big
        code, body = await service.request("POST", "/admin/sync/trigger")
        # The trigger itself may already find no room for the new run's row.
        if code == 200:
            run_id = body["data"]["runId"]
            data = await service.wait_status(lambda d: d["runId"] == run_id and not d["isRunning"])
            assert data["lastStatus"] == "error", data
            assert data["lastError"] == "Database error: database or disk is full", data
            assert_ledger_matches_catalog(db_path, run_id)
            reliability.ledger_catalog_checks_passed += 1
        else:
            assert code == 500 and "database or disk is full" in body["message"], body
        await assert_status_answers(service)
        reliability.runs_failed_cleanly += 1
        assert integrity_check(db_path) == "ok"
        reliability.integrity_checks_passed += 1
        assert running_rows(db_path) == 0
        after = catalog(db_path)
        # Nothing committed is lost: every product is there, each either as before or as the feed says.
        assert set(after) == set(before)
        assert all(after[key] in (before[key], expected_catalog(big)[key]) for key in after)

        (small_disk / "filler").unlink()
        await asyncio.sleep(0)
        data = await run_to_end(service)
        assert data["lastStatus"] == "success", data
        assert catalog(db_path) == expected_catalog(big)
        reliability.recoveries_succeeded += 1
    finally:
        await service.stop()
