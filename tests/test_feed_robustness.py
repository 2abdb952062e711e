"""Feeds that are odd but plausible: each case here failed a run, or changed the catalog, before.

Real aiohttp upstreams on loopback, the real engine, a real SQLite file (see engine_fixtures.harness).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from service.app import create_app
from tests.catalog_checks import open_db
from tests.conftest import AUTH, AiohttpClient, finished, make_settings, wait_for_status
from tests.engine_fixtures import harness
from tests.upstream import FeedControl, dummyjson_app, make_product


async def serve_dummyjson(aiohttp_server: AiohttpServer, products: list[dict[str, Any]]) -> str:
    server = await aiohttp_server(dummyjson_app(FeedControl(products=products)), host="127.0.0.1")
    return str(server.make_url("/products"))


async def serve_body(
    aiohttp_server: AiohttpServer, body: bytes, content_type: str = "application/x-ndjson"
) -> str:
    async def feed(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/feed", feed)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/feed"))


@pytest.mark.parametrize("batch_size", [1, 2, 1000])
async def test_a_duplicate_id_never_changes_the_stored_product_and_is_reported_every_run(
    tmp_path: Path, aiohttp_server: AiohttpServer, batch_size: int
) -> None:
    first = make_product(1, title="First", price=1.0)
    second = make_product(1, title="Second", price=2.0)
    url = await serve_dummyjson(aiohttp_server, [first, make_product(2), second])
    async with harness(tmp_path, batch_size=batch_size, page_size=1) as h:
        for attempt in range(4):
            run = await h.sync(url)
            assert run.status == "success", run
            assert run.errors == 1, (attempt, run)
            assert await h.run_errors(run.id) == [(2, "1", "duplicate id: already at position 0")]
            stored = (await h.products())["1"]
            assert (stored["title"], stored["price_minor"]) == ("First", 100), attempt
            await h.assert_ledger_matches_catalog(run.id)
        assert run.unchanged == 2


async def test_a_duplicate_far_apart_in_a_large_ndjson_feed_is_caught(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    products = [make_product(i) for i in range(1, 3001)]
    products.append(make_product(17, title="Changed copy"))
    body = b"".join(orjson.dumps(p) + b"\n" for p in products)
    url = await serve_body(aiohttp_server, body)
    async with harness(tmp_path, source_format="ndjson", batch_size=100) as h:
        for _ in range(2):
            run = await h.sync(url)
            assert run.errors == 1 and (await h.products())["17"]["title"] == products[16]["title"]
            assert await h.run_errors(run.id) == [(3000, "17", "duplicate id: already at position 16")]


async def test_credentials_in_the_source_url_are_never_logged_stored_or_answered(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = await serve_dummyjson(aiohttp_server, [make_product(i) for i in range(1, 4)])
    secret_url = upstream.replace("http://", "http://user:HUNTER2@") + "?api_key=SECRETKEY&region=eu"
    client = await aiohttp_client(create_app(make_settings(tmp_path, source_url=secret_url)))
    caplog.set_level(logging.INFO)
    await client.post("/admin/sync/trigger", headers=AUTH)
    data = await wait_for_status(client, finished)
    assert data["lastStatus"] == "success", data
    runs = await (await client.get("/admin/sync/runs", headers=AUTH)).text()
    detail = await (await client.get(f"/admin/sync/runs/{data['runId']}", headers=AUTH)).text()
    with open_db(tmp_path / "sync.db") as conn:
        source = conn.execute("SELECT source FROM runs WHERE id = ?", (data["runId"],)).fetchone()[0]
    assert source == upstream.replace("http://", "http://***@") + "?api_key=***&region=***"
    # The upstream's own access log (same process here) is not ours: only the service's records count.
    service_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("service"))
    assert "from http://***@" in service_log
    for shown in (runs, detail, source, service_log):
        assert "HUNTER2" not in shown and "SECRETKEY" not in shown and "user:" not in shown


@pytest.mark.parametrize(
    "category",
    ["Одежда", "家电", "Ομορφιά", "Électroménager", "★★★"],
    ids=["uk", "zh", "el", "fr", "symbols"],
)
async def test_categories_and_titles_in_any_script_are_synced(
    tmp_path: Path, aiohttp_server: AiohttpServer, category: str
) -> None:
    products = [make_product(i, category=category, title=f"{category} {i}") for i in range(1, 4)]
    url = await serve_dummyjson(aiohttp_server, products)
    async with harness(tmp_path) as h:
        run = await h.sync(url)
        assert (run.status, run.created, run.errors, run.categories_created) == ("success", 3, 0, 1)
        stored = await h.products()
        assert {p["category_name"] for p in stored.values()} == {category}
        handles = {p["handle"] for p in stored.values()}
        assert len(handles) == 3 and all(handle.isascii() for handle in handles)


async def test_two_category_names_with_one_handle_are_refused_not_merged(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    products = [make_product(1, category="T-Shirts"), make_product(2, category="t shirts")]
    url = await serve_dummyjson(aiohttp_server, products)
    async with harness(tmp_path) as h:
        for _ in range(2):
            run = await h.sync(url)
            assert (run.status, run.errors) == ("success", 1)
            assert await h.run_errors(run.id) == [
                (
                    1,
                    "2",
                    "category 't shirts' makes the handle 't-shirts' of the category 'T-Shirts';"
                    " rename one of them upstream",
                )
            ]
            assert set(await h.products()) == {"1"}


async def test_ndjson_answered_with_an_html_page_fails_the_run(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    page = b"<!doctype html>\n<html>\n<body>Maintenance</body>\n</html>\n"
    async with harness(tmp_path, source_format="ndjson") as h:
        run = await h.sync(await serve_body(aiohttp_server, page, "text/html"))
        assert run.status == "error"
        assert (
            run.error_message == "Upstream answered a text/html page, not an NDJSON feed (opening the feed)"
        )
        # The same page sent as JSON is told apart by its first line.
        run = await h.sync(await serve_body(aiohttp_server, b"\n\n" + page, "application/json"))
        assert run.status == "error"
        assert run.error_message == (
            "Upstream answered a markup page, not an NDJSON feed (its first line starts with '<')"
        )
        assert await h.scalar("SELECT count(*) FROM products") == 0


async def test_a_feed_whose_items_have_no_id_reports_item_errors_not_a_repeated_page(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    products = [{"_id": f"x{i}", "title": f"T{i}", "category": "c", "price": 1.0} for i in range(25)]
    url = await serve_dummyjson(aiohttp_server, products)
    async with harness(tmp_path, page_size=10) as h:
        run = await h.sync(url)
    assert run.status == "error"
    assert run.error_message is not None and "repeated" not in run.error_message
    assert run.error_message.startswith("25 of 25 items were item errors")
    assert (run.processed, run.errors) == (25, 25)


async def test_a_fat_page_is_asked_for_again_in_smaller_pages_and_an_oversize_product_is_an_item_error(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    products = [make_product(i) for i in range(1, 41)]
    for fat in (5, 6, 7):
        products[fat]["description"] = "x" * 30_000
    products[20]["description"] = "y" * 80_000  # over the page limit even alone
    control = FeedControl(products=products)
    server = await aiohttp_server(dummyjson_app(control), host="127.0.0.1")
    async with harness(tmp_path, page_size=10, max_page_bytes=64 * 1024) as h:
        run = await h.sync(str(server.make_url("/products")))
        assert (run.status, run.created, run.errors, run.processed) == ("success", 39, 1, 40), run
        assert await h.run_errors(run.id) == [
            (20, None, "the product is larger than the page limit of 65536 bytes")
        ]
        stored = await h.products()
        assert stored[str(products[6]["id"])]["description"] == "x" * 30_000
    assert control.requests > 4  # pages were asked for again, smaller


async def test_a_page_that_trickles_for_longer_than_the_stall_timeout_is_not_a_stall(
    tmp_path: Path, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> None:
    products = [make_product(i) for i in range(1, 6)]
    body = orjson.dumps({"products": products, "total": 5, "skip": 0, "limit": 10})

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        step = len(body) // 20 + 1
        for start in range(0, len(body), step):  # 20 pieces, 0.1 s apart: 2 s in all
            await response.write(body[start : start + step])
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/products", trickle)
    server = await aiohttp_server(app, host="127.0.0.1")
    settings = make_settings(
        tmp_path, source_url=str(server.make_url("/products")), stall_timeout_s=0.8, page_size=10
    )
    client = await aiohttp_client(create_app(settings))
    await client.post("/admin/sync/trigger", headers=AUTH)
    data = await wait_for_status(client, finished)
    assert data["lastStatus"] == "success", data
    assert data["stats"]["created"] == 5


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("source_format", ["dummyjson", "ndjson"])
async def test_out_of_range_and_deep_values_are_one_items_error_or_stored_exactly(
    tmp_path: Path, aiohttp_server: AiohttpServer, source_format: str
) -> None:
    products = [make_product(i) for i in range(0, 6)]
    products[1]["stock"] = 10_000_000_000_000_000_000  # past SQLite's signed 64-bit INTEGER
    products[2]["barcode"] = 123_456_789_012_345_678_901  # an extra past 64 bits: kept exactly
    products[3]["nested"] = _nested(300)  # deeper than orjson writes
    products[4]["price"] = "PRICE"  # replaced below by a literal no double holds
    # The standard library writes integers of any size (orjson refuses them).
    lines = [json.dumps(p).replace('"PRICE"', "19.9900000000000000001").encode() for p in products]
    if source_format == "ndjson":
        url = await serve_body(aiohttp_server, b"\n".join(lines) + b"\n")
    else:
        page = b'{"products":[' + b",".join(lines) + b'],"total":6,"skip":0,"limit":100}'
        url = await serve_body(aiohttp_server, page, "application/json")
    async with harness(tmp_path, source_format=source_format) as h:
        for _ in range(2):
            run = await h.sync(url)
            assert run.status == "success", run.error_message
            assert await h.run_errors(run.id) == [
                (1, "1", "stock: Input should be less than or equal to 9223372036854775807"),
                (4, "4", "price 19.9900000000000000001 has more than 2 decimal places for USD"),
            ]
            stored = await h.products()
            assert set(stored) == {"0", "2", "3", "5"}
            assert '"barcode":123456789012345678901' in stored["2"]["metadata"]
            assert stored["3"]["metadata"].count("[") == 300


async def test_a_page_nested_past_what_a_parser_reads_fails_clearly(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """Deeper than msgspec (which reads the envelope) and the exact parser go: a named error, not a
    RecursionError out of the reader."""
    deep = b'{"id":1,"title":"t","category":"c","price":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    page = b'{"products":[' + deep + b'],"total":1,"skip":0,"limit":1}'
    url = await serve_body(aiohttp_server, page, "application/json")
    async with harness(tmp_path) as h:
        run = await h.sync(url)
        assert (run.status, run.error_message) == (
            "error",
            "Upstream page is nested too deeply to read (page skip=0)",
        )
        await h.assert_ledger_matches_catalog(run.id)


@pytest.mark.parametrize("batch_size", [1, 1000])
async def test_a_product_refused_for_its_category_leaves_its_id_to_a_later_item(
    tmp_path: Path, aiohttp_server: AiohttpServer, batch_size: int
) -> None:
    products = [
        make_product(1, category="Beauty"),
        make_product(2, category="beauty"),  # clashes with "Beauty": refused by the catalog
        make_product(2, category="Beauty", title="Second copy"),
    ]
    url = await serve_dummyjson(aiohttp_server, products)
    async with harness(tmp_path, batch_size=batch_size, page_size=1) as h:
        for _ in range(2):
            run = await h.sync(url)
            assert [error[:2] for error in await h.run_errors(run.id)] == [(1, "2")]
            await h.assert_ledger_matches_catalog(run.id)
            assert (await h.products())["2"]["title"] == "Second copy"


@pytest.mark.parametrize("batch_size", [1, 2])
async def test_the_copy_that_takes_a_refused_products_id_is_the_first_copy_of_later_ones(
    tmp_path: Path, aiohttp_server: AiohttpServer, batch_size: int
) -> None:
    # NDJSON in one body: the writer has every batch at once. In batches of 2 the refused product and
    # the copy that takes its id are in consecutive batches; in batches of 1, another batch is between.
    products = [
        make_product(1, category="Beauty"),
        make_product(2, category="beauty"),  # clashes with "Beauty": refused by the catalog
        make_product(3, category="Beauty"),
        make_product(2, category="Beauty", title="Second copy"),
        make_product(2, category="Beauty", title="Third copy"),  # a duplicate of the second copy
    ]
    url = await serve_body(aiohttp_server, b"".join(orjson.dumps(p) + b"\n" for p in products))
    async with harness(tmp_path, source_format="ndjson", batch_size=batch_size) as h:
        for attempt in range(2):
            run = await h.sync(url)
            assert run.status == "success", run.error_message
            errors = await h.run_errors(run.id)
            assert [error[:2] for error in errors] == [(1, "2"), (4, "2")], attempt
            assert errors[1][2] == "duplicate id: already at position 3"
            assert (await h.products())["2"]["title"] == "Second copy"
            assert (run.created, run.unchanged) == ((3, 0) if attempt == 0 else (0, 3))
            await h.assert_ledger_matches_catalog(run.id)


@pytest.mark.parametrize("source_format", ["dummyjson", "ndjson"])
async def test_an_id_with_a_nul_character_is_an_item_error_on_every_run(
    tmp_path: Path, aiohttp_server: AiohttpServer, source_format: str
) -> None:
    products = [make_product(i) for i in range(1, 5)]
    products += [{**make_product(5), "id": "a\u0000b"}, {**make_product(6), "id": "\u0000"}]
    lines = [orjson.dumps(p) for p in products]
    if source_format == "ndjson":
        url = await serve_body(aiohttp_server, b"\n".join(lines) + b"\n")
    else:
        url = await serve_dummyjson(aiohttp_server, products)
    async with harness(tmp_path, source_format=source_format, batch_size=1) as h:
        for _ in range(2):
            run = await h.sync(url)
            assert run.status == "success", run.error_message
            errors = await h.run_errors(run.id)
            assert [(position, reason) for position, _, reason in errors] == [
                (4, "id: Value error, id must not contain a NUL character"),
                (5, "id: Value error, id must not contain a NUL character"),
            ]


async def test_pages_of_one_repeated_id_are_duplicates_not_a_repeated_page(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    products = [make_product(1, title=f"Copy {n}") for n in range(4)]
    url = await serve_dummyjson(aiohttp_server, products)
    async with harness(tmp_path, page_size=2, batch_size=1, max_error_fraction=1.0) as h:
        run = await h.sync(url)
    assert run.status == "success", run.error_message
    assert (run.created, run.errors) == (1, 3)
