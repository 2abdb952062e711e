"""The 194-product demo catalog through the real client path, into a real SQLite catalog."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from service.demo_upstream.products import SyntheticCatalog
from service.demo_upstream.server import DemoUpstream, build_demo_app
from tests.conftest import BOTH_BACKENDS
from tests.engine_fixtures import harness

pytestmark = BOTH_BACKENDS


def demo_products() -> list[dict[str, Any]]:
    return [dict(product) for product in SyntheticCatalog()]


async def serve(aiohttp_server: AiohttpServer, products: list[dict[str, Any]]) -> str:
    server = await aiohttp_server(build_demo_app(products))
    return str(server.make_url("/products"))


async def test_first_run_creates_the_194_demo_products_with_their_categories(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    upstream = DemoUpstream()
    url = await upstream.start()
    try:
        async with harness(tmp_path, **store_settings, page_size=50) as h:
            run = await h.sync(url)
            assert run.status == "success", run.error_message
            assert (run.created, run.updated, run.unchanged, run.errors) == (194, 0, 0, 0)
            assert (run.categories_created, run.processed, run.total) == (24, 194, 194)
            await h.assert_ledger_matches_catalog(run.id)

            stored = await h.products()
            assert len(stored) == 194
            expected = {str(p["id"]): p for p in SyntheticCatalog()}
            for external_id, row in stored.items():
                source = expected[external_id]
                assert row["title"] == source["title"]
                assert row["category_handle"] == source["category"]
                assert row["price_minor"] == round(source["price"] * 100)
                assert row["brand"] == source.get("brand")
                assert orjson.loads(row["images"]) == source["images"]
                assert orjson.loads(row["metadata"])["reviews"] == source["reviews"]
            categories = collections.Counter(row["category_handle"] for row in stored.values())
            assert len(categories) == 24
            handles = [row["handle"] for row in stored.values()]
            assert len(set(handles)) == 194
            # The two products sharing a title: the first keeps the slug, the second gets its id appended.
            twins = sorted(
                (int(k), r["handle"]) for k, r in stored.items() if r["title"] == stored["98"]["title"]
            )
            assert [handle for _, handle in twins] == [stored["98"]["handle"], f"{stored['98']['handle']}-99"]
    finally:
        await upstream.close()


async def test_second_identical_run_changes_nothing(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    url = await serve(aiohttp_server, demo_products())
    async with harness(tmp_path, **store_settings) as h:
        first = await h.sync(url)
        before = await h.products()
        second = await h.sync(url)
        assert second.status == "success"
        assert (second.created, second.updated, second.unchanged, second.categories_created) == (0, 0, 194, 0)
        assert await h.products() == before  # not rewritten: updated_run / updated_at untouched
        assert {row["updated_run"] for row in before.values()} == {first.id}
        await h.assert_ledger_matches_catalog(second.id)


async def test_changed_titles_and_prices_are_updated_in_place(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    products = demo_products()
    app = build_demo_app(products)
    server = await aiohttp_server(app)
    url = str(server.make_url("/products"))
    async with harness(tmp_path, **store_settings, page_size=30) as h:
        await h.sync(url)
        before = await h.products()
        products[3]["title"] = "Renamed Lipstick Deluxe"
        products[40]["price"] = 19.49
        products[41]["title"] = products[41]["title"] + " II"
        products[150]["price"] = 0.99
        products[193]["title"] = "Completely New Name"
        run = await h.sync(url)
        assert run.status == "success"
        assert (run.created, run.updated, run.unchanged, run.errors) == (0, 5, 189, 0)
        await h.assert_ledger_matches_catalog(run.id)
        after = await h.products()
        assert len(after) == 194
        renamed = after["4"]
        assert renamed["id"] == before["4"]["id"]  # the same row, matched by external id
        assert (renamed["title"], renamed["handle"]) == ("Renamed Lipstick Deluxe", "renamed-lipstick-deluxe")
        assert renamed["created_run"] != renamed["updated_run"] == run.id
        assert after["41"]["price_minor"] == 1949
        assert after["151"]["price_minor"] == 99
        changed = {k for k in after if after[k] != before[k]}
        assert changed == {"4", "41", "42", "151", "194"}


async def test_title_swap_between_two_products_keeps_handles_unique(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    products = demo_products()[:10]
    server = await aiohttp_server(build_demo_app(products))
    url = str(server.make_url("/products"))
    async with harness(tmp_path, **store_settings) as h:
        await h.sync(url)
        products[0]["title"], products[1]["title"] = products[1]["title"], products[0]["title"]
        run = await h.sync(url)
        assert (run.status, run.updated, run.errors) == ("success", 2, 0)
        stored = await h.products()
        assert len({row["handle"] for row in stored.values()}) == 10
        assert stored["1"]["title"] == products[0]["title"]


async def test_new_product_with_a_taken_title_gets_a_unique_handle(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    products = demo_products()[:5]
    server = await aiohttp_server(build_demo_app(products))
    url = str(server.make_url("/products"))
    async with harness(tmp_path, **store_settings) as h:
        await h.sync(url)
        products.append({**products[0], "id": "ext-77"})
        run = await h.sync(url)
        assert (run.created, run.unchanged) == (1, 5)
        stored = await h.products()
        assert stored["ext-77"]["handle"] == stored["1"]["handle"] + "-ext-77"


async def test_ids_with_the_same_slug_get_numbered_handles(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    products = demo_products()[:1]
    title = products[0]["title"]
    # "x-1", "X 1", "x_1" and "X.1" all slugify to "x-1": the handle with the id is taken too.
    for external_id in ("X 1", "x_1", "X.1"):
        products.append({**products[0], "id": external_id})
    products[0]["id"] = "x-1"
    async with harness(tmp_path, **store_settings) as h:
        run = await h.sync(await serve(aiohttp_server, products))
        assert (run.status, run.created) == ("success", 4)
        stored = await h.products()
        base = stored["x-1"]["handle"]
        assert base == title.lower().replace(" ", "-")
        assert [stored[i]["handle"] for i in ("X 1", "x_1", "X.1")] == [
            f"{base}-x-1",
            f"{base}-x-1-2",
            f"{base}-x-1-3",
        ]


async def test_a_changed_product_keeps_the_handle_its_title_gave_it(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    products = demo_products()[:2]
    products[1]["title"] = products[0]["title"]
    url = await serve(aiohttp_server, products)
    async with harness(tmp_path, **store_settings) as h:
        await h.sync(url)
        before = await h.products()
        assert before["2"]["handle"] == before["1"]["handle"] + "-2"
        # Product 1 frees the title's slug; product 2 changes but keeps its handle (links stay valid).
        products[0]["title"] = "Something Else Entirely"
        products[1]["price"] = 1.25
        run = await h.sync(url)
        assert run.updated == 2
        after = await h.products()
        assert after["1"]["handle"] == "something-else-entirely"
        assert (after["2"]["handle"], after["2"]["price_minor"]) == (before["2"]["handle"], 125)


@pytest.mark.parametrize(("count", "page_size"), [(0, 10), (95, 10), (100, 10), (7, 100), (1, 1)])
async def test_paging_edge_cases(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer, count: int, page_size: int
) -> None:
    requests: list[Mapping[str, str]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        requests.append(dict(request.query))
        response: web.StreamResponse = await handler(request)
        return response

    app = build_demo_app(SyntheticCatalog(count))
    app.middlewares.append(record)
    server = await aiohttp_server(app)
    url = str(server.make_url("/products"))
    async with harness(tmp_path, **store_settings, page_size=page_size) as h:
        run = await h.sync(url)
        assert run.status == "success", run.error_message
        assert (run.created, run.processed, run.total) == (count, count, count)
        assert len(await h.products()) == count
        await h.assert_ledger_matches_catalog(run.id)
    expected_pages = max(1, -(-count // page_size))
    assert [int(q["skip"]) for q in requests] == [n * page_size for n in range(expected_pages)]
