"""The Medusa sink against a real Medusa v2 server (no mock): what lands in the shop, what is sent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient, AiohttpServer

from scripts.throwaway_medusa import free_port
from service.app import create_app
from service.catalog.mapping import slugify
from service.demo_upstream.products import demo_product
from service.settings import Settings
from tests.medusa_shop import REPO_ROOT, Shop, run_sync, start_sync, sync_env
from tests.upstream import FeedControl, dummyjson_app, make_product

pytestmark = pytest.mark.medusa

PRODUCT_FIELDS = (
    "id,external_id,handle,title,status,updated_at,metadata,variants.id,variants.sku,variants.prices.id,"
    "variants.prices.amount,variants.prices.currency_code,sales_channels.id,categories.id,categories.handle"
)


def ledger_rows(db_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM runs ORDER BY id")]


def run_errors(db_path: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(db_path) as conn:
        return list(conn.execute("SELECT position, external_id, reason FROM run_errors ORDER BY id"))


def by_external_id(shop: Shop) -> dict[str, dict[str, Any]]:
    products = shop.products(PRODUCT_FIELDS)
    ids = Counter(product["external_id"] for product in products)
    assert [external_id for external_id, count in ids.items() if count > 1] == []  # never a duplicate
    return {product["external_id"]: product for product in products}


async def feed_url(aiohttp_server: AiohttpServer, control: FeedControl) -> str:
    server = await aiohttp_server(dummyjson_app(control), host="127.0.0.1")
    return str(server.make_url("/products"))


async def test_the_demo_feed_lands_in_the_shop_priced_categorised_and_published(
    shop: Shop, tmp_path: Path
) -> None:
    db_path = tmp_path / "sync.db"
    result = await run_sync(sync_env(shop, db_path))
    assert result.code == 0, result
    products = by_external_id(shop)
    assert sorted(products, key=int) == [str(i) for i in range(1, 195)]
    channel = shop.default_sales_channel()
    for external_id, product in products.items():
        expected = demo_product(int(external_id) - 1)
        assert product["status"] == "published"
        assert product["title"] == expected["title"]
        (variant,) = product["variants"]
        (price,) = variant["prices"]
        # Major units, exactly: 9.99 stays 9.99 (Medusa v2 does not take cents).
        assert price["currency_code"] == "usd"
        assert Decimal(str(price["amount"])) == Decimal(str(expected["price"]))
        assert variant["sku"] == expected["sku"]
        assert [channel_ref["id"] for channel_ref in product["sales_channels"]] == [channel]
        assert [category["handle"] for category in product["categories"]] == [slugify(expected["category"])]
    assert len(shop.categories()) == 24
    (run,) = ledger_rows(db_path)
    assert (run["status"], run["created"], run["updated"], run["unchanged"], run["errors"]) == (
        "success",
        194,
        0,
        0,
        0,
    )
    assert run["categories_created"] == 24


async def test_an_identical_re_sync_sends_no_write_request_and_changes_nothing(
    shop: Shop, tmp_path: Path
) -> None:
    env = sync_env(shop, tmp_path / "sync.db")
    assert (await run_sync(env)).code == 0
    before = {key: product["updated_at"] for key, product in by_external_id(shop).items()}
    mark = shop.log_mark()
    result = await run_sync(env)
    assert result.code == 0, result
    assert shop.write_requests_since(mark) == []
    after = {key: product["updated_at"] for key, product in by_external_id(shop).items()}
    assert after == before
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert (run["created"], run["updated"], run["unchanged"]) == (0, 0, 194)


async def test_five_changed_prices_are_five_updates_in_place(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 41)])
    env = sync_env(shop, tmp_path / "sync.db", await feed_url(aiohttp_server, control), SYNC_PAGE_SIZE="15")
    assert (await run_sync(env)).code == 0
    first = by_external_id(shop)
    changed = ["3", "11", "17", "29", "40"]
    for product in control.products:
        if str(product["id"]) in changed:
            product["price"] = "123.45"
    mark = shop.log_mark()
    result = await run_sync(env)
    assert result.code == 0, result
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert (run["created"], run["updated"], run["unchanged"]) == (0, 5, 35)
    writes = shop.write_requests_since(mark)
    assert writes and set(writes) == {"POST /admin/products/batch"}  # one per batch holding a change
    second = by_external_id(shop)
    for external_id in changed:
        old, new = first[external_id], second[external_id]
        assert new["id"] == old["id"]
        assert new["variants"][0]["id"] == old["variants"][0]["id"]  # the variant (and its SKU) survived
        assert new["variants"][0]["sku"] == old["variants"][0]["sku"]
        assert new["variants"][0]["prices"][0]["id"] == old["variants"][0]["prices"][0]["id"]
        assert Decimal(str(new["variants"][0]["prices"][0]["amount"])) == Decimal("123.45")
    # Only the five were sent: every other product is as it was (a price change alone leaves the
    # product row's updated_at as it is, so the untouched ones are what this can tell).
    untouched = [key for key in first if key not in changed]
    assert all(second[key]["updated_at"] == first[key]["updated_at"] for key in untouched)
    assert all(second[key]["variants"] == first[key]["variants"] for key in untouched)


async def test_a_renamed_product_is_the_same_product(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 6)])
    env = sync_env(shop, tmp_path / "sync.db", await feed_url(aiohttp_server, control))
    assert (await run_sync(env)).code == 0
    first = by_external_id(shop)
    control.products[1]["title"] = "A Completely New Name"
    assert (await run_sync(env)).code == 0
    second = by_external_id(shop)
    assert len(second) == 5
    assert second["2"]["id"] == first["2"]["id"]
    assert second["2"]["title"] == "A Completely New Name"
    assert second["2"]["variants"][0]["id"] == first["2"]["variants"][0]["id"]


def create_like_the_replaced_job(
    shop: Shop, products: list[dict[str, Any]], suffixed: frozenset[int] = frozenset()
) -> dict[str, str]:
    """Products as the job this service replaces left them: matched by handle, the upstream id only in
    metadata, no external_id, a "Default Option" / "Default Value" variant without SKU, no channel."""
    body = {
        "create": [
            {
                "title": product["title"],
                # The replaced job added "-<id>" when two products of a batch made the same handle.
                "handle": slugify(product["title"])
                + (f"-{product['id']}" if product["id"] in suffixed else ""),
                "status": "published",
                "metadata": {"external_id": product["id"], "brand": product["brand"]},
                "options": [{"title": "Default Option", "values": ["Default Value"]}],
                "variants": [
                    {"title": "Default", "options": {"Default Option": "Default Value"}, "prices": []}
                ],
            }
            for product in products
        ]
    }
    created = shop.admin("POST", "/admin/products/batch", body)["created"]
    return {str(product["metadata"]["external_id"]): product["variants"][0]["id"] for product in created}


async def test_products_the_replaced_job_created_are_adopted_not_duplicated(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 21)])
    variants = create_like_the_replaced_job(shop, control.products[:12], suffixed=frozenset({4, 9}))
    env = sync_env(shop, tmp_path / "sync.db", await feed_url(aiohttp_server, control))
    result = await run_sync(env)
    assert result.code == 0, result
    products = by_external_id(shop)
    assert len(shop.products("id")) == 20  # 12 adopted, 8 created: none twice
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert (run["created"], run["updated"]) == (8, 12)
    for external_id, variant_id in variants.items():
        product = products[external_id]
        assert product["variants"][0]["id"] == variant_id
        assert product["variants"][0]["sku"] == f"SKU-{int(external_id):06d}"
        assert product["sales_channels"], external_id
        assert Decimal(str(product["variants"][0]["prices"][0]["amount"])) == Decimal(
            str(control.products[int(external_id) - 1]["price"])
        )


async def test_one_product_medusa_refuses_is_one_item_error_and_the_rest_is_published(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    products = [make_product(i) for i in range(1, 31)]
    products[16]["sku"] = products[4]["sku"]  # variant SKUs are unique in a Medusa store
    control = FeedControl(products=products)
    env = sync_env(shop, tmp_path / "sync.db", await feed_url(aiohttp_server, control))
    result = await run_sync(env)
    assert result.code == 0, result
    assert sorted(by_external_id(shop), key=int) == [str(i) for i in range(1, 31) if i != 17]
    ((position, external_id, reason),) = run_errors(tmp_path / "sync.db")
    assert (position, external_id) == (16, "17")
    assert "Medusa refused it" in reason and "sku" in reason.lower()
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert (run["created"], run["errors"]) == (29, 1)


async def test_sigkill_mid_run_then_a_new_run_leaves_one_product_per_upstream_id(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    # 8 pages of 0.7 s: every run outlasts the last kill (4.5 s), however few products it still sends.
    control = FeedControl(products=[make_product(i) for i in range(1, 301)], page_delay_s=0.7)
    env = sync_env(
        shop,
        tmp_path / "sync.db",
        await feed_url(aiohttp_server, control),
        SYNC_PAGE_SIZE="40",
        SYNC_BATCH_SIZE="40",
        SYNC_PAGE_WINDOW="1",  # one slow page at a time, so the kills land mid-run
    )
    for delay in (1.5, 3.0, 4.5):  # kills land before, during and after batch requests
        process = await start_sync(env)
        await asyncio.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
    control.page_delay_s = 0
    result = await run_sync(env)
    assert result.code == 0, result
    products = by_external_id(shop)  # asserts no external id twice
    assert sorted(products, key=int) == [str(i) for i in range(1, 301)]
    runs = ledger_rows(tmp_path / "sync.db")
    assert [run["status"] for run in runs[:-1]] == ["error"] * (len(runs) - 1)  # recovered as interrupted
    # What the ledger says was confirmed never exceeds what Medusa holds, and the last run completes it.
    assert sum(run["created"] for run in runs) <= 300
    assert runs[-1]["created"] + runs[-1]["updated"] + runs[-1]["unchanged"] == 300


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"SYNC_MEDUSA_API_KEY": "sk_not_a_key"}, "Medusa refused the API key (401"),
        (
            {"SYNC_MEDUSA_SALES_CHANNEL_ID": "sc_01NOSUCHCHANNEL"},
            "sales channel sc_01NOSUCHCHANNEL does not exist",
        ),
        ({"SYNC_CURRENCY": "JPY"}, "the store does not list the currency jpy"),
    ],
)
async def test_a_wrong_key_channel_or_currency_is_a_clear_error(
    shop: Shop, tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    result = await run_sync(sync_env(shop, tmp_path / "sync.db", **extra))
    assert result.code == 1, result
    assert message in result.stderr, result.stderr
    assert shop.products("id") == []


async def test_medusa_down_is_a_clear_error(shop: Shop, tmp_path: Path) -> None:
    port = free_port()
    env = sync_env(shop, tmp_path / "sync.db", SYNC_MEDUSA_URL=f"http://127.0.0.1:{port}")
    result = await run_sync(env)
    assert result.code == 1, result
    assert f"Cannot connect to Medusa 127.0.0.1:{port}" in result.stderr, result.stderr


async def test_ready_and_status_show_where_products_go_without_the_key(
    shop: Shop, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    settings = Settings(
        db_path=tmp_path / "sync.db",
        sink="medusa",
        medusa_url=shop.url,
        medusa_api_key=SecretStr(shop.api_key),
        admin_tokens={"admin": SecretStr("secret-token")},
    )
    client = await aiohttp_client(create_app(settings))
    ready = await (await client.get("/ready")).json()
    assert ready["sink"] == {"kind": "medusa", "target": shop.url}
    response = await client.get("/admin/sync/status", headers={"Authorization": "Bearer secret-token"})
    body = await response.text()
    assert '"sink":{"kind":"medusa","target":"' + shop.url + '"}' in body
    assert shop.api_key not in body


async def test_the_service_does_not_start_with_a_wrong_key(shop: Shop, tmp_path: Path) -> None:
    env = sync_env(shop, tmp_path / "sync.db", SYNC_MEDUSA_API_KEY="sk_wrong", SYNC_PORT=str(free_port()))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "serve",
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert "cannot start: Medusa at" in stderr.decode() and "refused the API key" in stderr.decode()


async def test_medusa_restarted_mid_run_fails_the_run_clearly_and_the_next_run_converges(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 121)], page_delay_s=0.3)
    env = sync_env(
        shop,
        tmp_path / "sync.db",
        await feed_url(aiohttp_server, control),
        SYNC_PAGE_SIZE="20",
        SYNC_BATCH_SIZE="20",
        SYNC_PAGE_WINDOW="1",  # one slow page at a time, so Medusa dies mid-run
    )
    process = await start_sync(env)
    await asyncio.sleep(2.0)
    shop.server.kill()
    try:
        await asyncio.wait_for(process.communicate(), 120)
    finally:
        await asyncio.to_thread(shop.server.run_server)
    assert process.returncode == 1
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert run["status"] == "error"
    assert "Medusa" in run["error_message"], run["error_message"]
    control.page_delay_s = 0
    result = await run_sync(env)
    assert result.code == 0, result
    assert sorted(by_external_id(shop), key=int) == [str(i) for i in range(1, 121)]


class FaultyDoor:
    """A loopback door in front of the real Medusa that spoils chosen batch requests, as a network or
    an overloaded shop would: answers 503 with Retry-After, or forwards the request and answers late."""

    def __init__(self, medusa_url: str) -> None:
        self.medusa_url = medusa_url
        self.faults: list[str] = []  # "503", "500" or "late", used up one per batch request
        self.batch_requests = 0
        self.late_s = 0.0
        # Batch requests held until this many are in the door together (or a few seconds have passed):
        # a sender that sends one at a time never gets there.
        self.gather = 1
        self.in_flight = 0
        self.most_in_flight = 0
        self._arrived = asyncio.Condition()

    async def _wait_for_company(self) -> None:
        async with self._arrived:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._arrived.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait_for(lambda: self.in_flight >= self.gather), 5)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        fault = None
        is_batch = request.path == "/admin/products/batch" and request.method == "POST"
        if is_batch:
            self.batch_requests += 1
            fault = self.faults.pop(0) if self.faults else None
            await self._wait_for_company()
        try:
            return await self._answer(request, body, fault)
        finally:
            if is_batch:
                self.in_flight -= 1

    async def _answer(self, request: web.Request, body: bytes, fault: str | None) -> web.StreamResponse:
        if fault in ("503", "500"):
            return web.json_response(
                {"type": "unknown_error", "message": "busy"}, status=int(fault), headers={"Retry-After": "1"}
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.medusa_url + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            payload = await answer.read()
            status = answer.status
        if fault == "late":
            await asyncio.sleep(self.late_s)  # Medusa applied it; the answer comes after the client gave up
        return web.Response(body=payload, status=status, content_type="application/json")


async def test_a_503_with_retry_after_is_waited_out_and_a_late_answer_creates_nothing_twice(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    door = FaultyDoor(shop.url)
    door.faults = ["503", "late"]
    door.late_s = 4
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", door.handle)
    front = await aiohttp_server(app, host="127.0.0.1")
    control = FeedControl(products=[make_product(i) for i in range(1, 51)])
    env = sync_env(
        shop,
        tmp_path / "sync.db",
        await feed_url(aiohttp_server, control),
        SYNC_MEDUSA_URL=str(front.make_url("")).rstrip("/"),
        SYNC_READ_TIMEOUT_S="2",
        SYNC_RETRY_MAX_DELAY_S="2",
    )
    result = await run_sync(env)
    assert result.code == 0, result
    assert "Medusa answered 503" in result.stderr  # logged as a retried fault
    assert door.batch_requests >= 3  # refused, applied but answered late, then sent again as updates
    products = by_external_id(shop)  # no external id twice
    assert sorted(products, key=int) == [str(i) for i in range(1, 51)]
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert run["status"] == "success"
    assert run["created"] + run["updated"] == 50


async def door_in_front(shop: Shop, aiohttp_server: AiohttpServer) -> tuple[FaultyDoor, str]:
    door = FaultyDoor(shop.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", door.handle)
    front = await aiohttp_server(app, host="127.0.0.1")
    return door, str(front.make_url("")).rstrip("/")


@pytest.mark.parametrize(
    ("concurrency", "count", "requests"),
    [
        (1, 400, 1),  # one batch, one request
        (2, 400, 2),  # two requests of 200, in the door at once
        (3, 90, 1),  # too small to split: a request costs Medusa most of a second whatever it holds
    ],
)
async def test_a_batch_goes_to_medusa_as_requests_side_by_side(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer, concurrency: int, count: int, requests: int
) -> None:
    door, front_url = await door_in_front(shop, aiohttp_server)
    door.gather = concurrency
    control = FeedControl(products=[make_product(i) for i in range(1, count + 1)])
    env = sync_env(
        shop,
        tmp_path / "sync.db",
        await feed_url(aiohttp_server, control),
        SYNC_MEDUSA_URL=front_url,
        SYNC_MEDUSA_CONCURRENCY=str(concurrency),
        SYNC_BATCH_SIZE=str(count),
        SYNC_PAGE_SIZE=str(count),
    )
    result = await run_sync(env)
    assert result.code == 0, result
    assert (door.batch_requests, door.most_in_flight) == (requests, requests)
    assert sorted(by_external_id(shop), key=int) == [str(i) for i in range(1, count + 1)]
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert (run["status"], run["created"]) == ("success", count)


async def test_a_request_that_fails_cancels_its_side_by_side_ones_and_the_next_run_converges(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    door, front_url = await door_in_front(shop, aiohttp_server)
    door.gather = 2
    door.faults = ["500", "late"]  # the first fails for good; the second is applied, then answered late
    door.late_s = 3
    control = FeedControl(products=[make_product(i) for i in range(1, 401)])
    env = sync_env(
        shop,
        tmp_path / "sync.db",
        await feed_url(aiohttp_server, control),
        SYNC_MEDUSA_URL=front_url,
        SYNC_MEDUSA_CONCURRENCY="2",
        SYNC_RETRY_ATTEMPTS="1",
        SYNC_BATCH_SIZE="400",
        SYNC_PAGE_SIZE="400",
    )
    result = await run_sync(env)
    assert result.code == 1, result
    assert "Medusa answered 500" in result.stderr
    failed = ledger_rows(tmp_path / "sync.db")[-1]
    # Nothing Medusa did not confirm is counted, though half of it may be in the shop by now.
    assert (failed["status"], failed["created"], failed["updated"]) == ("error", 0, 0)
    await asyncio.sleep(door.late_s)  # the applied request's answer is out of the way
    assert (await run_sync(env)).code == 0
    products = by_external_id(shop)  # no external id twice
    assert sorted(products, key=int) == [str(i) for i in range(1, 401)]
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert (run["status"], run["created"] + run["updated"], run["errors"]) == ("success", 400, 0)


async def test_a_product_deleted_in_the_shop_comes_back_when_it_changes_upstream(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 11)])
    env = sync_env(shop, tmp_path / "sync.db", await feed_url(aiohttp_server, control))
    assert (await run_sync(env)).code == 0
    gone = by_external_id(shop)["3"]["id"]
    shop.admin("POST", "/admin/products/batch", {"delete": [gone]})  # by shop staff, say
    control.products[2]["price"] = "55.55"
    result = await run_sync(env)
    assert result.code == 0, result
    back = by_external_id(shop)
    assert sorted(back, key=int) == [str(i) for i in range(1, 11)]
    assert back["3"]["id"] != gone
    assert Decimal(str(back["3"]["variants"][0]["prices"][0]["amount"])) == Decimal("55.55")
    assert run_errors(tmp_path / "sync.db") == []


async def test_a_category_the_shop_renamed_is_used_as_it_is(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    renamed = shop.admin(
        "POST", "/admin/product-categories", {"name": "Beauty & Care", "handle": "beauty", "is_active": True}
    )["product_category"]
    control = FeedControl(products=[make_product(i, category="beauty") for i in range(1, 6)])
    env = sync_env(shop, tmp_path / "sync.db", await feed_url(aiohttp_server, control))
    result = await run_sync(env)
    assert result.code == 0, result
    assert run_errors(tmp_path / "sync.db") == []
    assert {product["categories"][0]["id"] for product in by_external_id(shop).values()} == {renamed["id"]}
    assert [category["name"] for category in shop.categories()] == ["Beauty & Care"]
    run = ledger_rows(tmp_path / "sync.db")[-1]
    assert (run["created"], run["categories_created"]) == (5, 0)
