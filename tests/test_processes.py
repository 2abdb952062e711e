"""Real service processes on one database file: SIGKILL, SIGTERM, and a second process beside the first."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from service.ledger.records import INTERRUPTED_MESSAGE, SHUTDOWN_MESSAGE
from tests.conftest import AUTH
from tests.service_process import ServiceProcess
from tests.upstream import FeedControl

Spawn = Callable[..., ServiceProcess]


@pytest.fixture
async def spawn(tmp_path: Path, upstream_url: str) -> AsyncIterator[Spawn]:
    started: list[ServiceProcess] = []

    def make(**env: str) -> ServiceProcess:
        service = ServiceProcess(
            tmp_path / "shared.db", upstream_url, tmp_path / f"svc{len(started)}.log", **env
        )
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


def running_rows(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()
        return int(count)


def held(data: dict[str, object]) -> bool:
    """The run is in progress and has committed its first page (the gate holds the rest)."""
    stats = data["stats"]
    assert isinstance(stats, dict)
    return data["isRunning"] is True and stats["created"] == 50


async def test_sigkill_mid_run_is_recovered_on_the_first_status_answer(
    spawn: Spawn, feed: FeedControl, tmp_path: Path
) -> None:
    feed.gate = asyncio.Event()
    first = await spawn().start()
    code, body = await first.request("POST", "/admin/sync/trigger")
    assert code == 200
    killed_run = body["data"]["runId"]
    await first.wait_status(held)
    first.send_signal(signal.SIGKILL)
    assert await first.wait_exit() == -signal.SIGKILL

    second = await spawn().start()
    data = await second.status()  # the very first answer, no waiting
    assert data["isRunning"] is False
    assert data["lastStatus"] == "error"
    assert data["lastError"] == INTERRUPTED_MESSAGE
    assert data["runId"] == killed_run
    assert data["stats"]["created"] == 50  # exactly what the killed run committed

    code, body = await second.request("POST", "/admin/sync/trigger")
    assert code == 200
    feed.gate.set()
    data = await second.wait_status(lambda d: d["isRunning"] is False and d["runId"] == body["data"]["runId"])
    assert data["lastStatus"] == "success"
    assert (data["stats"]["created"], data["stats"]["unchanged"]) == (144, 50)
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 194


async def test_second_process_does_not_disturb_a_running_sync(
    spawn: Spawn, feed: FeedControl, tmp_path: Path
) -> None:
    feed.gate = asyncio.Event()
    first = await spawn().start()
    _, body = await first.request("POST", "/admin/sync/trigger")
    started_at = body["data"]["startedAt"]
    await first.wait_status(held)

    second = await spawn().start()  # its start-up recovery must leave the live run alone
    data = await second.status()
    assert data["isRunning"] is True and data["lastStatus"] == "running"
    code, conflict = await second.request("POST", "/admin/sync/trigger")
    assert code == 409
    assert conflict == {
        "status": "error",
        "message": "Sync job is already running",
        "data": {"startedAt": started_at, "runId": body["data"]["runId"]},
    }
    assert running_rows(tmp_path / "shared.db") == 1

    feed.gate.set()
    data = await first.wait_status(lambda d: d["isRunning"] is False)
    assert data["lastStatus"] == "success" and data["stats"]["created"] == 194
    assert (await second.status())["lastStatus"] == "success"


async def test_concurrent_triggers_on_two_processes_start_exactly_one_run(
    spawn: Spawn, feed: FeedControl, tmp_path: Path
) -> None:
    feed.gate = asyncio.Event()
    services = [await spawn().start(), await spawn().start()]
    attempts = [svc.request("POST", "/admin/sync/trigger") for svc in services for _ in range(100)]
    results = await asyncio.gather(*attempts)
    codes = sorted(code for code, _ in results)
    assert codes.count(200) == 1 and codes.count(409) == 199, codes
    winner = next(body for code, body in results if code == 200)
    for code, body in results:
        if code == 409:
            assert body["data"]["startedAt"] == winner["data"]["startedAt"]
    assert running_rows(tmp_path / "shared.db") == 1
    feed.gate.set()
    await services[0].wait_status(lambda d: d["isRunning"] is False)


async def test_sigterm_finishes_the_run_as_interrupted_and_exits_cleanly(
    spawn: Spawn, feed: FeedControl, tmp_path: Path
) -> None:
    feed.gate = asyncio.Event()
    service = await spawn(SYNC_SHUTDOWN_TIMEOUT_S="5").start()
    _, body = await service.request("POST", "/admin/sync/trigger")
    await service.wait_status(held)
    service.send_signal(signal.SIGTERM)
    assert await service.wait_exit(timeout_s=10) == 0
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        status, message, finished_at = conn.execute(
            "SELECT status, error_message, finished_at FROM runs WHERE id = ?", (body["data"]["runId"],)
        ).fetchone()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        created = conn.execute("SELECT count(*) FROM products").fetchone()[0]
    assert (status, message) == ("error", SHUTDOWN_MESSAGE)
    assert finished_at is not None
    assert created == 50
    log = service.log_text()
    assert "❌ Manual sync failed: " + SHUTDOWN_MESSAGE in log
    assert AUTH["Authorization"].split()[1] not in log
