"""The database file deleted or replaced under a running service: every route says so, nothing recreates it.

A process keeps the file it opened even after ``rm``: its writes go on into an unlinked file that is gone
at restart. The service notices that its path no longer leads to that file (by device and inode) and
answers a named error instead of reporting runs that nobody will ever see.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.api.keys import RUNNER
from service.settings import Settings
from service.sync.runner import FAILURE_PREFIX
from tests.conftest import AUTH, finished, wait_for_status
from tests.service_process import ServiceProcess
from tests.upstream import FeedControl

Client = TestClient[web.Request, web.Application]


def database_files(db_path: Path) -> list[Path]:
    return [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]


def delete_database(db_path: Path) -> None:
    for path in database_files(db_path):
        path.unlink(missing_ok=True)


def replace_database(db_path: Path) -> None:
    """Put a copy of the file in its place: same content, another inode (as a restore from backup)."""
    copy = db_path.with_name("restored.db")
    shutil.copyfile(db_path, copy)
    os.replace(copy, db_path)


async def answer(client: Client, method: str, path: str) -> tuple[int, dict[str, Any]]:
    response = await client.request(method, path, headers=AUTH)
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


async def assert_every_route_names_the_fault(client: Client, db_path: Path, what: str) -> None:
    fault = f"database file {db_path} was {what} after this process opened it; restart the service"
    assert await answer(client, "GET", "/ready") == (
        503,
        {"status": "error", "message": f"Database unavailable: {fault}"},
    )
    assert await answer(client, "POST", "/admin/sync/trigger") == (
        500,
        {"status": "error", "message": f"Could not start the sync: {fault}"},
    )
    assert await answer(client, "GET", "/admin/sync/status") == (
        500,
        {"status": "error", "message": f"Could not read the sync status: {fault}"},
    )
    assert await answer(client, "GET", "/admin/sync/runs") == (
        500,
        {"status": "error", "message": f"Could not list the runs: {fault}"},
    )
    assert await answer(client, "GET", "/admin/sync/runs/1") == (
        500,
        {"status": "error", "message": f"Could not read run 1: {fault}"},
    )
    assert await answer(client, "GET", "/metrics") == (
        500,
        {"status": "error", "message": f"Could not read the metrics: {fault}"},
    )
    assert await answer(client, "POST", "/admin/sync/cancel") == (
        500,
        {"status": "error", "message": f"Could not cancel the sync: {fault}"},
    )


async def test_a_deleted_database_fails_readiness_and_every_route_by_name(
    client: Client, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    await client.post("/admin/sync/trigger", headers=AUTH)
    assert (await wait_for_status(client, finished))["lastStatus"] == "success"
    assert (await client.get("/ready")).status == 200

    delete_database(settings.db_path)
    caplog.clear()
    await assert_every_route_names_the_fault(client, settings.db_path, "deleted")
    assert not settings.db_path.exists()  # nothing recreated an empty file at the path
    assert not [record for record in caplog.records if record.exc_info], "a named error needs no traceback"


async def test_a_replaced_database_fails_readiness_and_every_route_by_name(
    client: Client, settings: Settings
) -> None:
    await client.post("/admin/sync/trigger", headers=AUTH)
    assert (await wait_for_status(client, finished))["lastStatus"] == "success"
    replace_database(settings.db_path)
    await assert_every_route_names_the_fault(client, settings.db_path, "replaced by another file")


async def test_a_run_in_progress_fails_with_the_reason_and_nothing_recreates_the_file(
    client: Client, settings: Settings, feed: FeedControl, caplog: pytest.LogCaptureFixture
) -> None:
    feed.gate = asyncio.Event()  # the run commits its first page, then waits for the next
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    assert response.status == 200
    await wait_for_status(client, lambda d: d["stats"]["created"] == 50)

    caplog.set_level(logging.INFO)
    delete_database(settings.db_path)
    feed.gate.set()
    outcome = await asyncio.wait_for(client.app[RUNNER].wait(), 20)

    fault = f"database file {settings.db_path} was deleted after this process opened it; restart the service"
    assert (outcome.status, outcome.error_message) == ("error", fault)
    assert f"{FAILURE_PREFIX}{fault}" in caplog.messages
    assert not [message for message in caplog.messages if "Unexpected error" in message]
    assert [path for path in database_files(settings.db_path) if path.exists()] == []
    assert await answer(client, "GET", "/ready") == (
        503,
        {"status": "error", "message": f"Database unavailable: {fault}"},
    )


async def test_a_service_process_reports_the_deleted_file_stops_cleanly_and_restarts_on_a_new_one(
    tmp_path: Path, upstream_url: str
) -> None:
    db_path = tmp_path / "service.db"
    service = await ServiceProcess(db_path, upstream_url, tmp_path / "service.log").start()
    try:
        code, body = await service.request("POST", "/admin/sync/trigger")
        assert code == 200, body
        await service.wait_status(lambda d: d["lastStatus"] == "success")
        delete_database(db_path)
        fault = f"database file {db_path} was deleted after this process opened it; restart the service"
        assert await service.request("GET", "/ready", headers={}) == (
            503,
            {"status": "error", "message": f"Database unavailable: {fault}"},
        )
        code, body = await service.request("POST", "/admin/sync/trigger")
        assert (code, body["message"]) == (500, f"Could not start the sync: {fault}")
        service.send_signal(signal.SIGTERM)
        assert await service.wait_exit() == 0, service.log_text()
        assert "Traceback" not in service.log_text()
        assert not db_path.exists()

        await service.start()  # the restart the message asks for: a new, empty ledger at the path
        assert (await service.request("GET", "/ready", headers={}))[0] == 200
        code, body = await service.request("GET", "/admin/sync/runs")
        assert (code, body["data"]["runs"]) == (200, [])
    finally:
        await service.stop()
