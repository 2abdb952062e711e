"""Products gone upstream, in the SQLite catalog: kept, archived (and restored when they come back) or
deleted, only after a run that read the whole feed, and never more than the allowed fraction."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from service.api.keys import SETTINGS
from service.app import create_app
from tests.conftest import AUTH, BOTH_BACKENDS, AiohttpClient, finished, make_settings, wait_for_status
from tests.ledger_rows import read
from tests.upstream import FeedControl, make_product

pytestmark = BOTH_BACKENDS

Client = TestClient[web.Request, web.Application]
TEN = [make_product(i) for i in range(1, 11)]


def rows(client: Client, sql: str) -> list[tuple[Any, ...]]:
    """What an auditor reads in the client's database (the SQLite file, or PostgreSQL)."""
    return read(client.app[SETTINGS], sql)


def archived(client: Client) -> list[str]:
    return [
        r[0]
        for r in rows(client, "SELECT external_id FROM products WHERE archived_at IS NOT NULL ORDER BY id")
    ]


async def sync(client: Client) -> dict[str, Any]:
    before = (await (await client.get("/admin/sync/status", headers=AUTH)).json())["data"]["runId"]
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    assert response.status == 200, await response.text()
    return await wait_for_status(client, lambda d: finished(d) and d["runId"] != before)


async def changes(client: Client, run_id: int) -> list[tuple[str, str, str | None]]:
    body = await (await client.get(f"/admin/sync/runs/{run_id}", headers=AUTH)).json()
    return [(c["externalId"], c["kind"], c["action"]) for c in body["data"]["changes"]]


async def app_for(
    aiohttp_client: AiohttpClient, tmp_path: Path, upstream_url: str, feed: FeedControl, **settings: Any
) -> Client:
    feed.products = list(TEN)
    return await aiohttp_client(create_app(make_settings(tmp_path, source_url=upstream_url, **settings)))


async def test_by_default_products_gone_upstream_are_kept(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    client = await app_for(aiohttp_client, tmp_path, upstream_url, feed, **store_settings)
    await sync(client)
    feed.products = TEN[:8]
    status = await sync(client)
    assert status["lastStatus"] == "success" and status["stats"]["removed"] == 0
    assert rows(client, "SELECT count(*) FROM products WHERE archived_at IS NULL") == [(10,)]


async def test_archived_when_gone_and_restored_when_back(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    client = await app_for(
        aiohttp_client, tmp_path, upstream_url, feed, removed_products="archive", **store_settings
    )
    await sync(client)
    feed.products = [p for p in TEN if p["id"] not in (3, 7)]
    gone = await sync(client)
    assert gone["lastStatus"] == "success", gone
    assert gone["stats"]["removed"] == 2 and gone["stats"]["unchanged"] == 8
    assert archived(client) == ["3", "7"]
    assert rows(client, "SELECT count(*) FROM products") == [(10,)]  # archived, not deleted
    assert rows(client, "SELECT DISTINCT archived_run FROM products WHERE archived_at IS NOT NULL") == [
        (gone["runId"],)
    ]
    assert sorted(await changes(client, gone["runId"])) == [
        ("3", "remove", "archive"),
        ("7", "remove", "archive"),
    ]
    # Nothing more to remove while they stay gone.
    again = await sync(client)
    assert again["stats"]["removed"] == 0 and await changes(client, again["runId"]) == []

    feed.products = list(TEN)  # they come back, exactly as they were
    back = await sync(client)
    assert back["stats"]["restored"] == 2 and back["stats"]["updated"] == 2, back
    assert back["stats"]["unchanged"] == 8 and archived(client) == []
    assert sorted(await changes(client, back["runId"])) == [("3", "restore", None), ("7", "restore", None)]
    settled = await sync(client)
    assert settled["stats"]["unchanged"] == 10 and settled["stats"]["restored"] == 0


async def test_deleted_when_gone_and_created_again_when_back(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    client = await app_for(
        aiohttp_client, tmp_path, upstream_url, feed, removed_products="delete", **store_settings
    )
    await sync(client)
    feed.products = TEN[:7]
    gone = await sync(client)
    assert gone["stats"]["removed"] == 3
    assert rows(client, "SELECT external_id FROM products ORDER BY id") == [(str(i),) for i in range(1, 8)]
    assert len(await changes(client, gone["runId"])) == 3
    feed.products = list(TEN)
    back = await sync(client)
    assert back["stats"]["created"] == 3 and back["stats"]["restored"] == 0


async def test_an_empty_or_truncated_feed_removes_nothing_and_fails_saying_why(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    client = await app_for(
        aiohttp_client, tmp_path, upstream_url, feed, removed_products="delete", **store_settings
    )
    await sync(client)
    feed.products = []  # an upstream answering 200 with no products
    empty = await sync(client)
    assert empty["lastStatus"] == "error"
    assert "Refusing to remove 10 of the 10 products" in empty["lastError"]
    assert (
        "SYNC_REMOVED_MAX_FRACTION (0.5)" in empty["lastError"]
        and "Nothing was removed" in empty["lastError"]
    )
    feed.products = TEN[:4]  # cut short: 6 of 10 missing
    cut = await sync(client)
    assert cut["lastStatus"] == "error" and "Refusing to remove 6 of the 10" in cut["lastError"]
    assert rows(client, "SELECT count(*) FROM products") == [(10,)]
    assert cut["stats"]["removed"] == 0
    feed.products = TEN[:5]  # exactly half missing is allowed: the rule is "more than"
    half = await sync(client)
    assert half["lastStatus"] == "success" and half["stats"]["removed"] == 5


async def test_nothing_is_removed_after_a_cancelled_run(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    client = await app_for(
        aiohttp_client, tmp_path, upstream_url, feed, removed_products="archive", page_size=3
    )
    await sync(client)
    feed.products = TEN[:6]
    feed.gate = asyncio.Event()  # the run reads its first page, then waits
    assert (await client.post("/admin/sync/trigger", headers=AUTH)).status == 200
    await wait_for_status(client, lambda d: d["isRunning"] and d["progress"]["processed"] >= 3)
    assert (await client.post("/admin/sync/cancel", headers=AUTH)).status == 200
    status = await wait_for_status(client, finished)
    assert status["lastStatus"] == "cancelled"
    feed.gate.set()
    assert archived(client) == [] and status["stats"]["removed"] == 0


async def test_items_in_error_are_still_listed_and_an_unnamed_one_stops_removal(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    client = await app_for(
        aiohttp_client, tmp_path, upstream_url, feed, removed_products="archive", **store_settings
    )
    await sync(client)
    # Product 2 is now invalid but still names its id; product 9 is gone.
    feed.products = [make_product(2, price=-1), *(p for p in TEN if p["id"] not in (2, 9))]
    status = await sync(client)
    assert status["lastStatus"] == "success" and status["stats"]["errors"] == 1
    assert archived(client) == ["9"]  # not 2: the feed still lists it

    # An item whose id cannot be read might be any product: nothing is taken for gone.
    feed.products = [{"title": "no id"}, *(p for p in TEN if p["id"] not in (5, 9))]
    unnamed = await sync(client)
    assert unnamed["lastStatus"] == "success" and unnamed["stats"]["removed"] == 0
    assert archived(client) == ["9"]
