"""One run at a time within a process, hung runs failed, cancellation within a second."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from tests.conftest import AUTH, BOTH_BACKENDS, AiohttpClient, finished, make_settings, wait_for_status
from tests.upstream import FeedControl

pytestmark = BOTH_BACKENDS

Client = TestClient[web.Request, web.Application]


async def test_fifty_concurrent_triggers_yield_exactly_one_run(client: Client, feed: FeedControl) -> None:
    feed.gate = asyncio.Event()
    responses = await asyncio.gather(*(client.post("/admin/sync/trigger", headers=AUTH) for _ in range(50)))
    bodies = [await r.json() for r in responses]
    codes = [r.status for r in responses]
    assert codes.count(200) == 1 and codes.count(409) == 49
    started_at = next(b for b in bodies if b["status"] == "success")["data"]["startedAt"]
    assert {b["data"]["startedAt"] for b in bodies} == {started_at}
    feed.gate.set()
    data = await wait_for_status(client, finished)
    assert data["lastStatus"] == "success"


async def test_a_hung_run_is_failed_after_the_stall_timeout(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    # The upstream stops answering after the first page; the read timeout is far away, so only the
    # stall detector can free the ledger.
    feed.gate = asyncio.Event()
    settings = make_settings(
        tmp_path,
        source_url=upstream_url,
        page_size=50,
        stall_timeout_s=0.5,
        read_timeout_s=60,
        **store_settings,
    )
    client = await aiohttp_client(create_app(settings))
    await client.post("/admin/sync/trigger", headers=AUTH)
    data = await wait_for_status(client, finished, timeout_s=10)
    assert data["lastStatus"] == "error"
    assert data["lastError"].startswith("Sync stalled: no progress for 0.5 s")
    assert data["stats"]["created"] == 50
    feed.gate.set()
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    assert response.status == 200
    data = await wait_for_status(client, lambda d: finished(d) and d["lastStatus"] == "success")
    assert data["stats"]["created"] == 144


async def test_cancel_stops_the_run_and_records_who(
    client: Client, feed: FeedControl, settings: object
) -> None:
    feed.gate = asyncio.Event()
    await client.post("/admin/sync/trigger", headers=AUTH)
    await wait_for_status(client, lambda d: d["stats"]["created"] == 50)
    loop = asyncio.get_running_loop()
    asked_at = loop.time()
    response = await client.post("/admin/sync/cancel", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "success" and isinstance(body["data"]["runId"], int)
    data = await wait_for_status(client, finished, timeout_s=1.0)
    assert loop.time() - asked_at < 1.0
    assert data["lastStatus"] == "cancelled"
    assert data["cancelledBy"] == "admin"
    assert data["stats"]["created"] == 50


async def test_cancel_with_nothing_running_is_409(client: Client) -> None:
    response = await client.post("/admin/sync/cancel", headers=AUTH)
    assert response.status == 409
    assert await response.json() == {"status": "error", "message": "No sync is running"}


async def test_cancel_from_another_process_on_the_same_database(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    """Two apps with their own connections and owner locks: the cancel travels through the ledger."""
    feed.gate = asyncio.Event()
    settings = make_settings(tmp_path, source_url=upstream_url, page_size=50, **store_settings)
    owner = await aiohttp_client(create_app(settings))
    other = await aiohttp_client(create_app(settings))
    await owner.post("/admin/sync/trigger", headers=AUTH)
    await wait_for_status(owner, lambda d: d["stats"]["created"] == 50)
    response = await other.post("/admin/sync/cancel", headers={"Authorization": AUTH["Authorization"]})
    assert response.status == 200
    data = await wait_for_status(owner, finished, timeout_s=1.0)
    assert data["lastStatus"] == "cancelled" and data["cancelledBy"] == "admin"
    seen_by_other = await wait_for_status(other, finished, timeout_s=1.0)
    assert seen_by_other["lastStatus"] == "cancelled" and seen_by_other["runId"] == data["runId"]
