"""Audit history over HTTP: newest first, cursor paging, status filter, item errors, JSON errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.api.keys import RUNNER
from service.app import create_app
from service.domain.outcomes import BatchCounts
from tests.conftest import AUTH, BOTH_BACKENDS, AiohttpClient, make_settings
from tests.jobs import ScriptedJob

pytestmark = BOTH_BACKENDS

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def job() -> ScriptedJob:
    return ScriptedJob()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, tmp_path: Path, job: ScriptedJob, store_settings: dict[str, Any]
) -> Client:
    settings = make_settings(tmp_path, source_url="http://127.0.0.1:9/", **store_settings)
    return await aiohttp_client(create_app(settings, job=job))


async def run_once(client: Client) -> int:
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    assert response.status == 200, await response.text()
    run_id: int = (await response.json())["data"]["runId"]
    await client.app[RUNNER].wait()
    return run_id


async def get_json(client: Client, path: str, expected_status: int = 200) -> dict[str, Any]:
    response = await client.get(path, headers=AUTH)
    assert response.status == expected_status, await response.text()
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    return body


async def page_through(client: Client, query: str) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        body = await get_json(client, f"/admin/sync/runs?{query}{suffix}")
        assert body["status"] == "success"
        pages.append(body["data"]["runs"])
        cursor = body["data"]["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor never ended"


async def test_paging_through_more_runs_than_the_limit(client: Client, job: ScriptedJob) -> None:
    ids = []
    for i in range(23):
        job.fail_with = "upstream said no" if i % 3 == 0 else None
        ids.append(await run_once(client))
    pages = await page_through(client, "limit=10")
    assert [len(p) for p in pages] == [10, 10, 3]
    seen = [run["id"] for page in pages for run in page]
    assert seen == sorted(ids, reverse=True)  # newest first, no gaps, no repeats across pages
    first = pages[0][0]
    assert first["status"] == "success" and first["triggeredBy"] == "admin"
    assert first["finishedAt"] is not None and isinstance(first["duration"], float)
    run_keys = {"id", "status", "startedAt", "finishedAt", "duration", "error", "triggeredBy", "cancelledBy"}
    assert set(first) >= run_keys | {"stats", "progress"}


async def test_status_filter_pages_only_matching_runs(client: Client, job: ScriptedJob) -> None:
    failed = []
    for i in range(12):
        job.fail_with = f"failure {i}" if i % 2 else None
        run_id = await run_once(client)
        if i % 2:
            failed.append(run_id)
    pages = await page_through(client, "status=error&limit=4")
    assert [len(p) for p in pages] == [4, 2]
    runs = [run for page in pages for run in page]
    assert [run["id"] for run in runs] == sorted(failed, reverse=True)
    assert all(run["status"] == "error" and run["error"].startswith("failure ") for run in runs)
    assert (await get_json(client, "/admin/sync/runs?status=cancelled"))["data"] == {
        "runs": [],
        "nextCursor": None,
    }


async def test_a_page_exactly_full_has_no_next_cursor(client: Client) -> None:
    for _ in range(3):
        await run_once(client)
    body = await get_json(client, "/admin/sync/runs?limit=3")
    assert len(body["data"]["runs"]) == 3 and body["data"]["nextCursor"] is None


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", "limit=ten", "cursor=abc", "cursor=0", "cursor=-5", "status=bogus", "status=OK"],
)
async def test_bad_list_parameters_are_400_json(client: Client, query: str) -> None:
    body = await get_json(client, f"/admin/sync/runs?{query}", expected_status=400)
    assert body["status"] == "error"
    assert set(body) == {"status", "message"} and body["message"]


@pytest.mark.parametrize("query", ["errorsLimit=0", "errorsLimit=x", "errorsCursor=-1", "errorsCursor=z"])
async def test_bad_detail_parameters_are_400_json(client: Client, query: str) -> None:
    run_id = await run_once(client)
    body = await get_json(client, f"/admin/sync/runs/{run_id}?{query}", expected_status=400)
    assert body["status"] == "error" and body["message"]


@pytest.mark.parametrize("run_id", ["999", "abc", "0"])
async def test_unknown_run_is_404_json(client: Client, run_id: str) -> None:
    await run_once(client)
    body = await get_json(client, f"/admin/sync/runs/{run_id}", expected_status=404)
    assert body == {"status": "error", "message": "Run not found"}


async def test_history_needs_credentials(client: Client) -> None:
    for path in ("/admin/sync/runs", "/admin/sync/runs/1"):
        response = await client.get(path)
        assert response.status == 401
        assert (await response.json())["status"] == "error"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_item_errors_are_paged_in_feed_order(client: Client, job: ScriptedJob) -> None:
    job.item_errors, job.counts = 120, BatchCounts(errors=120, processed=120, total=120)
    run_id = await run_once(client)
    job.item_errors, job.counts = 2, BatchCounts(errors=2, processed=2, total=2)
    await run_once(client)  # a later run's errors must not leak into the first run's pages

    errors: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        suffix = f"&errorsCursor={cursor}" if cursor else ""
        body = await get_json(client, f"/admin/sync/runs/{run_id}?errorsLimit=50{suffix}")
        data = body["data"]
        assert data["run"]["id"] == run_id and data["run"]["stats"]["errors"] == 120
        errors.extend(data["errors"])
        pages += 1
        cursor = data["nextErrorsCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [e["position"] for e in errors] == list(range(120))
    assert errors[7] == {
        "position": 7,
        "externalId": "ext-7",
        "reason": "price is missing (item 7)",
        "recordedAt": errors[7]["recordedAt"],
    }
    default_page = await get_json(client, f"/admin/sync/runs/{run_id}")
    assert len(default_page["data"]["errors"]) == 50
