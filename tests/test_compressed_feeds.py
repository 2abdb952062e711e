"""Upstreams that compress their answers (as DummyJSON behind its CDN does): the feed is read as sent, and
the size limits count what the bytes expand to, so a small compressed answer is held to them too."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from service.app import create_app
from tests.conftest import AiohttpClient, AiohttpServer, make_settings, sync_once
from tests.engine_fixtures import harness
from tests.upstream import FeedControl, dummyjson_app, make_product

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _gzipped(app: web.Application) -> web.Application:
    @web.middleware
    async def compress(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        assert isinstance(response, web.Response)
        response.enable_compression(force=web.ContentCoding.gzip)
        return response

    app.middlewares.append(compress)
    return app


async def _as_sent(url: str) -> tuple[str | None, int, int]:
    """The answer's Content-Encoding, its size on the wire and its size expanded."""
    async with aiohttp.ClientSession(auto_decompress=False) as http, http.get(url) as response:
        body = await response.read()
    encoding = response.headers.get("Content-Encoding")
    return encoding, len(body), len(gzip.decompress(body)) if encoding == "gzip" else len(body)


def _ndjson_gzip_app(body: bytes) -> web.Application:
    async def feed(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(body),
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        )

    app = web.Application()
    app.router.add_get("/feed", feed)
    return app


async def test_gzip_compressed_dummyjson_pages_sync_like_plain_ones(
    tmp_path: Path, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> None:
    products = [make_product(i, description="é" * 200) for i in range(1, 26)]
    control = FeedControl(products=products)
    server = await aiohttp_server(_gzipped(dummyjson_app(control)), host="127.0.0.1")
    encoding, sent, expanded = await _as_sent(str(server.make_url("/products?limit=10")))
    assert encoding == "gzip" and sent < expanded / 5
    control.requests = 0
    # Through the service itself, so its own HTTP client is the one that reads the compressed pages.
    settings = make_settings(tmp_path, source_url=str(server.make_url("/products")), page_size=10)
    client = await aiohttp_client(create_app(settings))
    data = await sync_once(client)
    assert data["lastStatus"] == "success", data
    assert (data["stats"]["created"], data["stats"]["errors"]) == (25, 0)
    assert control.requests == 3
    with sqlite3.connect(settings.db_path) as conn:
        (description,) = conn.execute("SELECT description FROM products WHERE external_id = '7'").fetchone()
    assert description == "é" * 200


async def test_a_small_gzip_page_that_expands_past_the_page_limit_holds_an_item_error(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    products = [make_product(i) for i in range(1, 11)]
    products[4]["description"] = "x" * 5_000_000  # about 5 KB once compressed, 5 MB expanded
    control = FeedControl(products=products)
    server = await aiohttp_server(_gzipped(dummyjson_app(control)), host="127.0.0.1")
    encoding, sent, expanded = await _as_sent(str(server.make_url("/products?limit=10")))
    assert encoding == "gzip" and sent < 64 * 1024 < expanded  # under the limit as sent, over it expanded
    async with harness(tmp_path, page_size=10, max_page_bytes=64 * 1024) as h:
        run = await h.sync(str(server.make_url("/products")))
        assert (run.status, run.created, run.errors, run.processed) == ("success", 9, 1, 10), run
        assert await h.run_errors(run.id) == [
            (4, None, "the product is larger than the page limit of 65536 bytes")
        ]


async def test_a_gzip_ndjson_feed_syncs_and_a_line_that_expands_past_the_limit_is_an_item_error(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    lines = [orjson.dumps(make_product(i)) for i in range(1, 6)]
    lines[2] = orjson.dumps(make_product(3, description="y" * 2_000_000))
    server = await aiohttp_server(_ndjson_gzip_app(b"\n".join(lines) + b"\n"), host="127.0.0.1")
    encoding, sent, expanded = await _as_sent(str(server.make_url("/feed")))
    assert encoding == "gzip" and sent < 64 * 1024 < expanded
    async with harness(
        tmp_path, source_format="ndjson", max_line_bytes=64 * 1024, max_error_fraction=1.0
    ) as h:
        run = await h.sync(str(server.make_url("/feed")))
        assert (run.status, run.created, run.errors, run.processed) == ("success", 4, 1, 5), run
        assert await h.run_errors(run.id) == [
            (2, None, "Feed line 3 is longer than the limit of 65536 bytes")
        ]
        assert set(await h.products()) == {"1", "2", "4", "5"}
