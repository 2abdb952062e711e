"""A dry run against a real Medusa: no write request reaches the shop, and the plan (with the fields
each update changes) has the counts of the real run that follows."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpServer

from tests.medusa_shop import Shop, sync_env
from tests.test_medusa_removals import synced
from tests.test_medusa_sink import feed_url
from tests.upstream import FeedControl, make_product

pytestmark = pytest.mark.medusa
COUNTED = ("created", "updated", "unchanged", "errors", "categories_created", "removed", "restored")


def planned(db_path: Path, run_id: int) -> dict[str, tuple[str, list[str] | None]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute("SELECT external_id, kind, fields FROM run_changes WHERE run_id = ?", (run_id,))
        return {eid: (kind, json.loads(fields) if fields else None) for eid, kind, fields in rows}


def counted(run: dict[str, Any]) -> dict[str, int]:
    return {key: run[key] for key in COUNTED}


async def test_a_dry_run_sends_nothing_and_plans_the_real_run(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 11)])
    db = tmp_path / "sync.db"
    env = sync_env(shop, db, await feed_url(aiohttp_server, control), SYNC_REMOVED_PRODUCTS="archive")

    mark = shop.log_mark()
    fresh = await synced(env, "--dry-run")
    assert fresh["dry_run"] == 1 and shop.write_requests_since(mark) == []
    assert shop.products("id") == [] and shop.categories() == []
    assert (fresh["created"], fresh["categories_created"]) == (10, 6)
    real = await synced(env)
    assert counted(real) == counted(fresh)

    control.products[2]["price"] = 77.5
    control.products[3]["title"] = "Renamed in the feed"
    control.products.pop()  # product 10 is gone upstream
    before = {p["id"]: (p["updated_at"], p["status"]) for p in shop.products("id,updated_at,status")}
    mark = shop.log_mark()
    dry = await synced(env, "--dry-run")
    assert shop.write_requests_since(mark) == []
    assert {p["id"]: (p["updated_at"], p["status"]) for p in shop.products("id,updated_at,status")} == before
    assert (dry["updated"], dry["unchanged"], dry["removed"]) == (2, 7, 1)
    plan = planned(db, dry["id"])
    assert plan["3"] == ("update", ["price"])
    assert plan["4"][0] == "update" and "title" in (plan["4"][1] or [])
    assert plan["10"] == ("remove", None)
    real = await synced(env)
    assert counted(real) == counted(dry)
