"""Sources, retry policy and the demo upstream, against real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient, AiohttpServer

from service.demo_upstream.products import SyntheticCatalog, demo_product
from service.demo_upstream.server import DemoUpstream, build_demo_app
from service.upstream.dummyjson import DummyJsonSource
from service.upstream.feed import MAX_CHUNK_ITEMS, FeedChunk
from service.upstream.http import upstream_headers
from service.upstream.ndjson import NdjsonSource
from service.upstream.retry import RetryableStatus, RetryPolicy, parse_retry_after
from tests.engine_fixtures import engine_settings


async def collect(source: DummyJsonSource | NdjsonSource) -> list[FeedChunk]:
    return [chunk async for chunk in source.chunks()]


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 7, 13, 33, 12, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 07 Jan 2026 13:33:42 GMT", now) == 30.0
    assert parse_retry_after("Wed, 07 Jan 2026 13:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(attempts=8, base_delay_s=0.5, max_delay_s=3.0, rng=random.Random(1))
    fault = TimeoutError()
    for attempt, full in [(2, 0.5), (3, 1.0), (4, 2.0), (5, 3.0), (8, 3.0)]:
        delays = {policy.delay_before(attempt, fault) for _ in range(50)}
        assert all(full / 2 <= delay <= full for delay in delays)
        assert len(delays) > 1  # jittered
    assert policy.delay_before(2, RetryableStatus(429, 2.0)) == 2.0
    assert policy.delay_before(2, RetryableStatus(503, 3600.0)) == 3.0


def test_auth_header_is_a_bare_value_or_a_named_header(tmp_path: Path) -> None:
    bare = engine_settings(tmp_path, source_auth_header=SecretStr("Bearer abc"), source_headers={"X-A": "1"})
    assert upstream_headers(bare) == {"X-A": "1", "Authorization": "Bearer abc"}
    named = engine_settings(tmp_path, source_auth_header=SecretStr("X-Api-Key: k3y"))
    assert upstream_headers(named) == {"X-Api-Key": "k3y"}


async def test_dummyjson_pages_follow_what_the_server_returns(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """A server that caps its page size below ours is still read to the end, in order."""

    async def capped(request: web.Request) -> web.Response:
        skip = int(request.query["skip"])
        page = [demo_product(i) for i in range(skip, min(23, skip + 5))]
        return web.json_response({"products": page, "total": 23, "skip": skip, "limit": len(page)})

    app = web.Application()
    app.router.add_get("/p", capped)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        source = DummyJsonSource(http, str(server.make_url("/p")), engine_settings(tmp_path, page_size=50))
        chunks = await collect(source)
    # Pages that are already in when one is handed on travel with it: where chunks start may vary.
    ends = [c.first_position + len(c.items) for c in chunks]
    assert [c.first_position for c in chunks] == [0, *ends[:-1]]
    assert [orjson.loads(item)["id"] for c in chunks for item in c.items if isinstance(item, bytes)] == list(
        range(1, 24)
    )
    assert {c.total for c in chunks} == {23}


async def test_dummyjson_keeps_the_query_of_the_configured_url(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    seen: list[dict[str, str]] = []

    async def page(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({"products": [], "total": 0, "skip": 0, "limit": 0})

    app = web.Application()
    app.router.add_get("/p", page)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        url = str(server.make_url("/p").with_query(select="title,price"))
        chunks = await collect(DummyJsonSource(http, url, engine_settings(tmp_path, page_size=7)))
    assert seen == [{"select": "title,price", "limit": "7", "skip": "0"}]
    assert [(c.items, c.total) for c in chunks] == [([], 0)]


async def test_ndjson_lines_split_across_network_reads(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    lines = [orjson.dumps(demo_product(i)) for i in range(30)]
    feed = b"\n".join(lines) + b"\n"

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "X-Total-Count": "30"})
        await response.prepare(request)
        for start in range(0, len(feed), 333):  # boundaries fall mid-line
            await response.write(feed[start : start + 333])
            await asyncio.sleep(0)
        return response

    app = web.Application()
    app.router.add_get("/f", trickle)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        source = NdjsonSource(http, str(server.make_url("/f")), engine_settings(tmp_path, batch_size=8))
        chunks = await collect(source)
    items = [item for chunk in chunks for item in chunk.items]
    assert items == lines
    assert all(len(chunk.items) <= 8 + 2 for chunk in chunks)  # chunks stay small: lines are handed on
    positions = [chunk.first_position for chunk in chunks]
    assert positions == sorted(positions) and positions[0] == 0
    assert {chunk.total for chunk in chunks} == {30}


async def test_a_batch_larger_than_a_chunk_is_read_in_chunks_of_at_most_a_thousand(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    # The chunks in flight are most of a sync's memory: a large batch must not make them large.
    lines = [orjson.dumps(demo_product(i)) for i in range(3000)]  # 904 bytes or more each

    async def feed(request: web.Request) -> web.Response:
        return web.Response(body=b"\n".join(lines) + b"\n", content_type="application/x-ndjson")

    app = web.Application()
    app.router.add_get("/f", feed)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        settings = engine_settings(tmp_path, batch_size=2000)
        chunks = await collect(NdjsonSource(http, str(server.make_url("/f")), settings))
    assert [item for chunk in chunks for item in chunk.items] == lines
    # A chunk ends after the network read that filled it: past MAX_CHUNK_ITEMS by one read's lines at
    # most (aiohttp hands over 128 KiB at most, under 150 of these lines).
    assert len(chunks) >= 3
    assert max(len(chunk.items) for chunk in chunks) < MAX_CHUNK_ITEMS + 150


async def test_demo_upstream_speaks_dummyjson(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(build_demo_app(SyntheticCatalog(194)))
    default = await (await client.get("/products")).json()
    assert (len(default["products"]), default["total"], default["skip"], default["limit"]) == (30, 194, 0, 30)
    last = await (await client.get("/products?limit=50&skip=180")).json()
    assert (len(last["products"]), last["limit"], last["products"][0]["id"]) == (14, 14, 181)
    everything = await (await client.get("/products?limit=0")).json()
    assert len(everything["products"]) == 194
    beyond = await (await client.get("/products?skip=500")).json()
    assert (beyond["products"], beyond["total"]) == ([], 194)
    bad = await client.get("/products?limit=ten")
    assert bad.status == 400
    assert "message" in await bad.json()
    ndjson = await client.get("/products.ndjson")
    assert ndjson.headers["Content-Type"] == "application/x-ndjson"
    assert ndjson.headers["X-Total-Count"] == "194"
    lines = (await ndjson.read()).splitlines()
    assert [orjson.loads(line) for line in lines] == everything["products"]


def test_demo_catalog_is_deterministic_and_realistic() -> None:
    products = list(SyntheticCatalog())
    assert products == list(SyntheticCatalog())
    assert len(products) == 194
    assert len({p["category"] for p in products}) == 24
    assert 20 < sum("brand" not in p for p in products) < 100
    titles = [p["title"] for p in products]
    assert len(titles) - len(set(titles)) == 1  # exactly one pair shares a title
    assert all(isinstance(p["price"], float) and round(p["price"], 2) == p["price"] for p in products)
    assert SyntheticCatalog(1_000_000)[999_999]["id"] == 1_000_000  # large feeds are lazy


async def test_demo_upstream_serves_on_loopback() -> None:
    upstream = DemoUpstream(count=3, source_format="ndjson")
    url = await upstream.start()
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/products.ndjson")
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert len((await response.read()).splitlines()) == 3
    finally:
        await upstream.close()
