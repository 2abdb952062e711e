"""Dry runs: everything read and compared, nothing written, a ledger row under the same one-run rule,
and stats equal to those of the real run that follows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from service.api.keys import SETTINGS
from service.app import create_app
from service.settings import Settings
from tests.conftest import AUTH, BOTH_BACKENDS, AiohttpClient, finished, make_settings, wait_for_status
from tests.ledger_rows import read
from tests.test_cli import cli_env, run_cli
from tests.upstream import FeedControl, make_product

Client = TestClient[web.Request, web.Application]
COMPARED = ("created", "updated", "unchanged", "errors", "categoriesCreated", "removed", "restored")


def catalog(settings: Settings) -> list[tuple[Any, ...]]:
    """Everything the sink writes, as it stands (the SQLite file, or PostgreSQL)."""
    products = read(settings, "SELECT * FROM products ORDER BY id")
    categories = read(settings, "SELECT * FROM categories ORDER BY id")
    return [*products, ("--",), *categories]


async def run(client: Client, body: Any = None) -> dict[str, Any]:
    before = (await (await client.get("/admin/sync/status", headers=AUTH)).json())["data"]["runId"]
    response = await client.post("/admin/sync/trigger", headers=AUTH, json=body)
    assert response.status == 200, await response.text()
    started = (await response.json())["data"]
    assert started["dryRun"] is bool(body and body.get("dryRun"))
    return await wait_for_status(client, lambda d: finished(d) and d["runId"] != before)


async def all_changes(client: Client, run_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await client.get(
            f"/admin/sync/runs/{run_id}?changesLimit=40{f'&changesCursor={cursor}' if cursor else ''}",
            headers=AUTH,
        )
        data = (await page.json())["data"]
        found.extend(data["changes"])
        if data["nextChangesCursor"] is None:
            return found
        cursor = data["nextChangesCursor"]


def stats(status: dict[str, Any]) -> dict[str, int]:
    return {key: status["stats"][key] for key in COMPARED}


@BOTH_BACKENDS
async def test_a_dry_run_of_a_new_catalog_writes_nothing_and_plans_what_the_sync_does(
    aiohttp_client: AiohttpClient, tmp_path: Path, upstream_url: str, store_settings: dict[str, Any]
) -> None:
    settings = make_settings(tmp_path, source_url=upstream_url, **store_settings)
    client = await aiohttp_client(create_app(settings))
    dry = await run(client, {"dryRun": True})
    assert dry["lastStatus"] == "success" and dry["dryRun"] is True
    assert dry["stats"]["created"] == 194 and dry["stats"]["categoriesCreated"] == 6
    assert catalog(settings) == [("--",)]
    planned = await all_changes(client, dry["runId"])
    assert len(planned) == 194 and {c["kind"] for c in planned} == {"create"}
    assert planned[0] == {
        "externalId": "1",
        "handle": "product-1",
        "kind": "create",
        "action": None,
        "fields": None,
    }
    runs = (await (await client.get("/admin/sync/runs", headers=AUTH)).json())["data"]["runs"]
    assert runs[0]["dryRun"] is True

    real = await run(client)
    assert real["dryRun"] is False and stats(real) == stats(dry)
    assert len(catalog(settings)) == 194 + 1 + 6
    assert await all_changes(client, real["runId"]) == []  # a real run lists only removals and restores


@BOTH_BACKENDS
async def test_a_dry_run_names_the_fields_each_update_changes_and_the_removals(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    settings = make_settings(tmp_path, source_url=upstream_url, removed_products="archive", **store_settings)
    client = await aiohttp_client(create_app(settings))
    await run(client)
    before = catalog(settings)
    products = {p["id"]: p for p in feed.products}
    products[3]["price"] = 1234.5
    products[4]["title"] = "A new title"
    products[5].update(price=1.25, stock=7)
    feed.products = [p for key, p in products.items() if key not in (100, 101)]
    feed.products.append(make_product(500))

    dry = await run(client, {"dryRun": True})
    assert dry["lastStatus"] == "success", dry
    assert (dry["stats"]["updated"], dry["stats"]["created"], dry["stats"]["removed"]) == (3, 1, 2)
    assert catalog(settings) == before  # nothing written, not even a fingerprint
    planned = {c["externalId"]: c for c in await all_changes(client, dry["runId"])}
    assert planned["3"]["fields"] == ["price"] and planned["3"]["kind"] == "update"
    assert planned["4"]["fields"] == ["title"]
    assert planned["5"]["fields"] == ["price", "stock"]
    assert planned["500"]["kind"] == "create"
    assert (planned["100"]["kind"], planned["100"]["action"]) == ("remove", "archive")
    assert planned["101"]["handle"] == "product-101"

    real = await run(client)
    assert stats(real) == stats(dry)
    again = await run(client, {"dryRun": True})
    assert again["stats"]["unchanged"] == 193 and again["stats"]["updated"] == 0


@BOTH_BACKENDS
async def test_the_trigger_body_is_checked_and_a_dry_run_is_one_run_like_another(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    upstream_url: str,
    feed: FeedControl,
    store_settings: dict[str, Any],
) -> None:
    client = await aiohttp_client(
        create_app(make_settings(tmp_path, source_url=upstream_url, **store_settings))
    )
    for body in (b'{"dryrun": true}', b'{"dryRun": "yes"}', b"not json", b"[true]"):
        response = await client.post("/admin/sync/trigger", headers=AUTH, data=body)
        assert response.status == 400, body
        answer = await response.json()
        assert answer == {
            "status": "error",
            "message": 'Expected no body, or a JSON body {"dryRun": true|false}',
        }
    assert (await (await client.get("/admin/sync/runs", headers=AUTH)).json())["data"]["runs"] == []

    feed.gate = asyncio.Event()
    assert (await client.post("/admin/sync/trigger", headers=AUTH, json={"dryRun": True})).status == 200
    busy = await client.post("/admin/sync/trigger", headers=AUTH)
    assert busy.status == 409  # the dry run holds the one running row
    feed.gate.set()
    done = await wait_for_status(client, finished)
    assert done["dryRun"] is True and done["lastStatus"] == "success"


async def test_the_cli_dry_run_says_what_a_sync_would_do(tmp_path: Path, upstream_url: str) -> None:
    db = tmp_path / "cli.db"
    result = await run_cli("sync", "--dry-run", "--quiet", env=cli_env(db, upstream_url))
    assert result.code == 0, result
    assert "dry run 1 success" in result.stdout and "created 194" in result.stdout
    assert "nothing was written" in result.stdout
    assert catalog(make_settings(tmp_path, db_path=db)) == [("--",)]
    logged = [json.loads(line)["message"] for line in result.stderr.splitlines() if line.strip()]
    assert "✅ Dry run completed successfully" in logged
    table = await run_cli("runs", env=cli_env(db))
    assert table.code == 0 and "dry run (nothing written)" in table.stdout.splitlines()[1]


@BOTH_BACKENDS
async def test_dry_runs_stay_out_of_the_metrics_of_what_syncs_did(
    aiohttp_client: AiohttpClient, tmp_path: Path, upstream_url: str, store_settings: dict[str, Any]
) -> None:
    client = await aiohttp_client(
        create_app(make_settings(tmp_path, source_url=upstream_url, **store_settings))
    )
    await run(client)
    first = await (await client.get("/metrics")).text()
    await run(client, {"dryRun": True})
    after = await (await client.get("/metrics")).text()

    def line(text: str, name: str) -> str:
        return next(row for row in text.splitlines() if row.startswith(name))

    for name in (
        'product_sync_runs_total{outcome="success"}',
        'product_sync_products_total{outcome="created"}',
        "product_sync_last_success_timestamp_seconds",
    ):
        assert line(after, name) == line(first, name)
    assert read(client.app[SETTINGS], "SELECT dry_run, started_via FROM run_summary") == [
        (1, "manual"),
        (0, "manual"),
    ]
