"""Products gone upstream, in a real Medusa: made drafts (and published again when they come back) or
deleted; only the products this service published, never one made in the shop by hand."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.medusa_shop import Shop, run_sync, sync_env
from tests.test_medusa_sink import FaultyDoor, feed_url, ledger_rows
from tests.upstream import FeedControl, make_product

pytestmark = pytest.mark.medusa

HAND_MADE = {
    "title": "Made in the shop",
    "handle": "made-in-the-shop",
    "status": "published",
    "options": [{"title": "Default Option", "values": ["Default Value"]}],
    "variants": [
        {
            "title": "Default",
            "prices": [{"currency_code": "usd", "amount": 5}],
            "options": {"Default Option": "Default Value"},
        }
    ],
}


def statuses(shop: Shop) -> dict[str, tuple[str, str]]:
    """Handle -> (status, id) of every product in the shop."""
    return {p["handle"]: (p["status"], p["id"]) for p in shop.products("id,handle,status,external_id")}


def by_upstream(shop: Shop) -> dict[str, tuple[str, str]]:
    return {
        p["external_id"]: (p["status"], p["id"])
        for p in shop.products("id,handle,status,external_id")
        if p["external_id"]
    }


def changes(db_path: Path, run_id: int) -> list[tuple[str, str, str | None]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return conn.execute(
            "SELECT external_id, kind, action FROM run_changes WHERE run_id = ? ORDER BY external_id",
            (run_id,),
        ).fetchall()


async def synced(env: dict[str, str], *args: str) -> dict[str, Any]:
    """A ``product-sync sync`` (with ``args``) that succeeds, and the ledger row it left."""
    result = await run_sync(env, *args)
    assert result.code == 0, result
    return ledger_rows(Path(env["SYNC_DB_PATH"]))[-1]


async def test_archived_products_become_drafts_and_are_published_again_in_place(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    shop.admin("POST", "/admin/products", HAND_MADE)
    control = FeedControl(products=[make_product(i) for i in range(1, 13)])
    db = tmp_path / "sync.db"
    env = sync_env(shop, db, await feed_url(aiohttp_server, control), SYNC_REMOVED_PRODUCTS="archive")
    await synced(env)
    first = by_upstream(shop)
    assert {status for status, _ in first.values()} == {"published"}

    control.products = [p for p in control.products if p["id"] not in (4, 5, 11)]
    run = await synced(env)
    assert (run["removed"], run["unchanged"]) == (3, 9)
    now = by_upstream(shop)
    assert {key for key, (status, _) in now.items() if status == "draft"} == {"4", "5", "11"}
    assert statuses(shop)["made-in-the-shop"][0] == "published"  # not ours: never touched
    assert changes(db, run["id"]) == [
        ("11", "remove", "archive"),
        ("4", "remove", "archive"),
        ("5", "remove", "archive"),
    ]

    control.products = [make_product(i) for i in range(1, 13)]
    back = await synced(env)
    assert (back["restored"], back["updated"], back["unchanged"]) == (3, 3, 9)
    again = by_upstream(shop)
    assert {status for status, _ in again.values()} == {"published"}
    assert {key: pid for key, (_, pid) in again.items()} == {key: pid for key, (_, pid) in first.items()}
    settled = await synced(env)
    assert (settled["unchanged"], settled["restored"]) == (12, 0)


async def test_deleted_products_leave_the_shop_and_come_back_as_new(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    shop.admin("POST", "/admin/products", HAND_MADE)
    control = FeedControl(products=[make_product(i) for i in range(1, 9)])
    db = tmp_path / "sync.db"
    env = sync_env(shop, db, await feed_url(aiohttp_server, control), SYNC_REMOVED_PRODUCTS="delete")
    await synced(env)
    control.products = control.products[:6]
    run = await synced(env)
    assert run["removed"] == 2
    assert sorted(by_upstream(shop)) == [str(i) for i in range(1, 7)]
    assert "made-in-the-shop" in statuses(shop)
    control.products = [make_product(i) for i in range(1, 9)]
    back = await synced(env)
    assert back["created"] == 2 and sorted(by_upstream(shop), key=int) == [str(i) for i in range(1, 9)]


async def test_an_empty_feed_never_empties_the_shop(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 7)])
    db = tmp_path / "sync.db"
    env = sync_env(shop, db, await feed_url(aiohttp_server, control), SYNC_REMOVED_PRODUCTS="delete")
    await synced(env)
    control.products = []
    result = await run_sync(env)
    assert result.code == 1, result
    run = ledger_rows(db)[-1]
    assert run["status"] == "error" and "Refusing to remove 6 of the 6 products" in run["error_message"]
    assert len(by_upstream(shop)) == 6


async def test_a_removal_whose_answer_was_lost_is_undone_when_the_product_comes_back(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    door = FaultyDoor(shop.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", door.handle)
    front = await aiohttp_server(app, host="127.0.0.1")
    control = FeedControl(products=[make_product(i) for i in range(1, 7)])
    db = tmp_path / "sync.db"
    env = {
        **sync_env(shop, db, await feed_url(aiohttp_server, control), SYNC_REMOVED_PRODUCTS="archive"),
        "SYNC_MEDUSA_URL": str(front.make_url("")).rstrip("/"),
        "SYNC_READ_TIMEOUT_S": "1",
        "SYNC_RETRY_ATTEMPTS": "2",
    }
    await synced(env)
    # Product 2 leaves the feed; Medusa applies the draft, but both answers come too late.
    control.products = [p for p in control.products if p["id"] != 2]
    door.faults, door.late_s = ["late", "late"], 2.5
    failed = await run_sync(env)
    assert failed.code == 1, failed
    assert by_upstream(shop)["2"][0] == "draft"  # the shop did it; the ledger never heard
    assert ledger_rows(db)[-1]["removed"] == 0

    control.products = [make_product(i) for i in range(1, 7)]  # it comes back, unchanged
    back = await synced(env)
    assert back["status"] == "success"
    assert {status for status, _ in by_upstream(shop).values()} == {"published"}


async def test_a_product_deleted_in_the_shop_by_hand_does_not_fail_its_removal(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 5)])
    db = tmp_path / "sync.db"
    env = sync_env(shop, db, await feed_url(aiohttp_server, control), SYNC_REMOVED_PRODUCTS="delete")
    await synced(env)
    shop.admin("POST", "/admin/products/batch", {"delete": [by_upstream(shop)["3"][1]]})
    control.products = control.products[:2]
    run = await synced(env)
    assert run["status"] == "success" and run["removed"] == 2
    assert sorted(by_upstream(shop)) == ["1", "2"]
