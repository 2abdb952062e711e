"""The API document's four scenarios, with the exact JSON shapes and types it shows."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import AUTH, BOTH_BACKENDS, finished, wait_for_status
from tests.upstream import FeedControl

pytestmark = BOTH_BACKENDS

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
STATUS_KEYS = {"isRunning", "lastRun", "lastStatus", "lastError", "lastDuration", "stats"}
Client = TestClient[web.Request, web.Application]


async def test_idle_status_is_exactly_the_documented_shape(client: Client) -> None:
    response = await client.get("/admin/sync/status", headers=AUTH)
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "success"
    data = body["data"]
    assert data.keys() >= STATUS_KEYS
    assert {k: data[k] for k in STATUS_KEYS} == {
        "isRunning": False,
        "lastRun": None,
        "lastStatus": "idle",
        "lastError": None,
        "lastDuration": None,
        "stats": {
            "created": 0,
            "updated": 0,
            "errors": 0,
            "unchanged": 0,
            "categoriesCreated": 0,
            "removed": 0,
            "restored": 0,
        },
    }


async def test_four_documented_scenarios(client: Client, feed: FeedControl) -> None:
    feed.gate = asyncio.Event()  # the first page is served, the rest wait: the run is held "running"

    # Test 1: trigger.
    response = await client.post("/admin/sync/trigger", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "success"
    assert body["message"] == "Sync job triggered successfully"
    assert body["data"]["checkStatusAt"] == "/admin/sync/status"
    started_at = body["data"]["startedAt"]
    assert TIMESTAMP.match(started_at)
    assert isinstance(body["data"]["runId"], int)

    # Test 2: status while running.
    data = await wait_for_status(client, lambda d: d["stats"]["created"] > 0)
    assert data["isRunning"] is True
    assert data["lastStatus"] == "running"
    assert data["lastRun"] == started_at
    assert data["lastError"] is None
    assert data["lastDuration"] is None
    assert all(isinstance(v, int) for v in data["stats"].values())
    assert data["progress"] == {"processed": 50, "total": 194}

    # Test 4: trigger while running: 409 naming the running run's start.
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    assert response.status == 409
    assert await response.json() == {
        "status": "error",
        "message": "Sync job is already running",
        "data": {"startedAt": started_at, "runId": body["data"]["runId"]},
    }

    # Test 3: status after completion.
    feed.gate.set()
    data = await wait_for_status(client, finished)
    assert data["lastStatus"] == "success", data
    assert data["lastRun"] == started_at
    assert data["lastError"] is None
    assert isinstance(data["lastDuration"], float)
    assert data["lastDuration"] >= 0 and round(data["lastDuration"], 2) == data["lastDuration"]
    assert data["stats"] == {
        "created": 194,
        "updated": 0,
        "errors": 0,
        "unchanged": 0,
        "categoriesCreated": 6,
        "removed": 0,
        "restored": 0,
    }
    assert TIMESTAMP.match(data["finishedAt"])


async def test_new_trigger_is_accepted_after_a_run_ends(client: Client) -> None:
    first = await (await client.post("/admin/sync/trigger", headers=AUTH)).json()
    await wait_for_status(client, finished)
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    assert response.status == 200
    second = await response.json()
    assert second["data"]["runId"] == first["data"]["runId"] + 1
    data = await wait_for_status(client, lambda d: finished(d) and d["runId"] == second["data"]["runId"])
    assert data["stats"]["created"] == 0 and data["stats"]["unchanged"] == 194


async def test_upstream_failure_is_reported_in_the_error_shape(client: Client, feed: FeedControl) -> None:
    feed.products = [*feed.products[:9], {"not": "a product"}]  # one bad item is an item error...
    await client.post("/admin/sync/trigger", headers=AUTH)
    data = await wait_for_status(client, finished)
    assert data["lastStatus"] == "success"
    assert data["stats"]["errors"] == 1 and data["stats"]["created"] == 9

    feed.products = [{"not": "a product"}]  # ...but a feed of nothing else is a failed sync
    await client.post("/admin/sync/trigger", headers=AUTH)
    data = await wait_for_status(
        client, lambda d: finished(d) and d["stats"]["errors"] == 1 and d["stats"]["created"] == 0
    )
    assert data["lastStatus"] == "error"
    assert data["lastError"] == (
        "1 of 1 items were item errors, more than the allowed fraction of 0.5 (SYNC_MAX_ERROR_FRACTION);"
        " the other 0 items were synced"
    )


async def test_unknown_routes_and_methods_answer_json(client: Client) -> None:
    for method, path, status in [
        ("GET", "/nope", 404),
        ("DELETE", "/admin/sync/status", 405),
        ("GET", "/admin/sync/trigger", 405),
    ]:
        response = await client.request(method, path, headers=AUTH)
        assert response.status == status
        assert response.content_type == "application/json"
        body = await response.json()
        assert body["status"] == "error" and isinstance(body["message"], str)


async def test_oversized_body_is_413_json(client: Client) -> None:
    response = await client.post("/admin/sync/trigger", headers=AUTH, data=b"x" * (200 * 1024))
    assert response.status == 413
    assert (await response.json())["status"] == "error"
