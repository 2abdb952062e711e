"""A database locked by another process past the busy timeout: each route answers a named error.

The lock is SQLite's own write lock, held by a real second connection (``BEGIN IMMEDIATE``) on the file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from tests.conftest import AUTH, AiohttpClient, finished, make_settings, wait_for_status

Client = TestClient[web.Request, web.Application]


@contextlib.contextmanager
def write_lock_held(db_path: Path) -> Iterator[None]:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@pytest.fixture
async def locked_client(aiohttp_client: AiohttpClient, tmp_path: Path, upstream_url: str) -> Client:
    settings = make_settings(tmp_path, source_url=upstream_url, page_size=50, busy_timeout_s=0.2)
    return await aiohttp_client(create_app(settings))


async def test_cancel_and_trigger_under_another_process_lock_answer_named_errors(
    locked_client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = locked_client
    await client.post("/admin/sync/trigger", headers=AUTH)
    assert (await wait_for_status(client, finished))["lastStatus"] == "success"

    caplog.clear()
    with write_lock_held(tmp_path / "sync.db"):
        cancel = await client.post("/admin/sync/cancel", headers=AUTH)
        assert cancel.status == 500
        assert await cancel.json() == {
            "status": "error",
            "message": "Could not cancel the sync: database is locked",
        }
        trigger = await client.post("/admin/sync/trigger", headers=AUTH)
        assert trigger.status == 500
        assert await trigger.json() == {
            "status": "error",
            "message": "Could not start the sync: database is locked",
        }
        # Reads go on beside the writer's lock (WAL).
        assert (await client.get("/admin/sync/runs", headers=AUTH)).status == 200
        assert (await client.get("/admin/sync/status", headers=AUTH)).status == 200
        assert (await client.get("/metrics")).status == 200
    assert not [record for record in caplog.records if record.exc_info], "a named error needs no traceback"
    assert "could not cancel the sync: database is locked" in caplog.messages

    # Once the lock is gone, cancel answers as usual (nothing is running).
    assert (await client.post("/admin/sync/cancel", headers=AUTH)).status == 409
