"""A window of DummyJSON pages in flight: handed on in feed order, bounded, backing off when told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from service.demo_upstream.products import demo_product
from service.domain.errors import SyncFailed
from service.upstream.dummyjson import DummyJsonSource
from service.upstream.feed import FeedChunk
from tests.engine_fixtures import engine_settings


class Pages:
    """A DummyJSON-compatible upstream that records how many requests are in flight at once."""

    def __init__(self, total: int, cap: int | None = None) -> None:
        self.total = total
        self.cap = cap  # a server that answers at most this many products, whatever limit asked
        self.delay_for: Callable[[int], float] = lambda skip: 0.0
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests: list[tuple[float, int]] = []  # (when, skip)
        # skip -> (status, Retry-After or None) to answer first
        self.status_for: dict[int, list[tuple[int, str | None]]] = {}
        self.total_from: dict[int, int] = {}  # skip -> the total to claim from there on
        self.ignore_skip = False

    async def handle(self, request: web.Request) -> web.Response:
        skip, limit = int(request.query["skip"]), int(request.query["limit"])
        self.requests.append((time.monotonic(), skip))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_for(skip))
            statuses = self.status_for.get(skip)
            if statuses:
                status, retry_after = statuses.pop(0)
                headers = {"Retry-After": retry_after} if retry_after else {}
                return web.json_response({"message": "slow down"}, status=status, headers=headers)
            total = next((t for start, t in sorted(self.total_from.items()) if skip >= start), self.total)
            start = 0 if self.ignore_skip else skip
            count = min(limit, self.cap or limit, max(0, self.total - start))
            products = [demo_product(i) for i in range(start, start + count)]
            return web.json_response({"products": products, "total": total, "skip": skip, "limit": count})
        finally:
            self.in_flight -= 1


async def read(
    tmp_path: Path, aiohttp_server: AiohttpServer, pages: Pages, **settings: Any
) -> list[FeedChunk]:
    app = web.Application()
    app.router.add_get("/p", pages.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    values = {"retry_base_delay_s": 0.01, "retry_max_delay_s": 2.0, **settings}
    async with aiohttp.ClientSession() as http:
        source = DummyJsonSource(http, str(server.make_url("/p")), engine_settings(tmp_path, **values))
        return [chunk async for chunk in source.chunks()]


def positions(chunks: list[FeedChunk]) -> list[int]:
    return [chunk.first_position + offset for chunk in chunks for offset in range(len(chunk.items))]


def item_ids(chunks: list[FeedChunk]) -> list[int]:
    """The products' ids; each product is handed on as its JSON text, as an NDJSON line is."""
    texts = [item for chunk in chunks for item in chunk.items]
    assert all(isinstance(text, bytes) for text in texts)
    return [orjson.loads(text)["id"] for text in texts if isinstance(text, bytes)]


async def read_slowly(
    tmp_path: Path, aiohttp_server: AiohttpServer, pages: Pages, pause_s: float, **settings: Any
) -> tuple[list[FeedChunk], BaseException | None]:
    """Chunks taken by a consumer that pauses after each one (a busy writer); and the fault, if any."""
    app = web.Application()
    app.router.add_get("/p", pages.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    values = {"retry_base_delay_s": 0.01, "retry_max_delay_s": 2.0, **settings}
    chunks: list[FeedChunk] = []
    async with aiohttp.ClientSession() as http:
        source = DummyJsonSource(http, str(server.make_url("/p")), engine_settings(tmp_path, **values))
        try:
            async for chunk in source.chunks():
                chunks.append(chunk)
                await asyncio.sleep(pause_s)
        except SyncFailed as exc:
            return chunks, exc
    return chunks, None


async def test_pages_in_flight_are_handed_on_in_feed_order_even_when_later_ones_answer_first(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    pages = Pages(total=400)
    pages.delay_for = lambda skip: 0.2 if skip % 200 == 40 else 0.01  # some pages answer late
    chunks = await read(tmp_path, aiohttp_server, pages, page_size=40, page_window=4)
    assert positions(chunks) == list(range(400))
    assert item_ids(chunks) == list(range(1, 401))
    assert 2 <= pages.most_in_flight <= 4  # concurrent, and never more than the window
    assert len(pages.requests) == 10  # every page asked for once


async def test_pages_already_in_are_handed_on_together_up_to_a_batch(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    pages = Pages(total=1000)
    chunks, fault = await read_slowly(
        tmp_path, aiohttp_server, pages, 0.3, page_size=40, page_window=5, batch_size=100
    )
    assert fault is None
    assert positions(chunks) == list(range(1000))
    assert item_ids(chunks) == list(range(1, 1001))
    sizes = [len(chunk.items) for chunk in chunks]
    # While the consumer pauses, the window's next pages come in; each chunk then takes the pages that
    # are in, until it holds a batch (100): three pages of 40.
    assert max(sizes) == 120 and sizes.count(120) >= 5, sizes
    assert len(pages.requests) == 25  # every page asked for once


async def test_a_fault_after_pages_already_in_hands_those_pages_on_first(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    pages = Pages(total=1000)
    pages.status_for = {200: [(500, None)] * 5}
    chunks, fault = await read_slowly(
        tmp_path, aiohttp_server, pages, 0.3, page_size=40, page_window=5, retry_attempts=1
    )
    assert isinstance(fault, SyncFailed) and "answered 500" in str(fault)
    assert positions(chunks) == list(range(200))  # every product before the failed page


async def test_a_window_of_one_pages_one_after_another(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    pages = Pages(total=200)
    pages.delay_for = lambda skip: 0.01
    chunks = await read(tmp_path, aiohttp_server, pages, page_size=40, page_window=1)
    assert positions(chunks) == list(range(200))
    assert pages.most_in_flight == 1


async def test_a_server_that_caps_the_page_size_is_paged_by_what_it_sends(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    pages = Pages(total=230, cap=20)
    pages.delay_for = lambda skip: 0.02
    chunks = await read(tmp_path, aiohttp_server, pages, page_size=100, page_window=5)
    assert positions(chunks) == list(range(230))
    assert len(pages.requests) == 12  # ceil(230 / 20): the window asked for the pages the server makes
    assert pages.most_in_flight >= 2


async def test_a_429_with_retry_after_pauses_every_page_and_shrinks_the_window(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    pages = Pages(total=600)
    # Page 120 is told to wait a second; page 160, in flight beside it, fails a moment later with a 503
    # that names no wait (the retry policy alone would ask again at once).
    pages.delay_for = lambda skip: 0.1 if skip == 160 else 0.02
    pages.status_for = {120: [(429, "1")], 160: [(503, None)]}
    chunks = await read(tmp_path, aiohttp_server, pages, page_size=40, page_window=5)
    assert positions(chunks) == list(range(600))
    answered = next(when for when, skip in pages.requests if skip == 120) + 0.02
    retries = [when - answered for when, skip in pages.requests if skip in (120, 160)][2:]
    # Both pages are asked again only after the Retry-After (1 s): it is the server's word for all pages.
    assert len(retries) >= 2 and min(retries) >= 0.9, retries


async def test_a_changing_total_is_still_told_with_pages_in_flight(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    pages = Pages(total=400)
    pages.total_from = {200: 401}
    with pytest.raises(SyncFailed, match="total changed from 400 to 401"):
        await read(tmp_path, aiohttp_server, pages, page_size=40, page_window=5)


async def test_a_server_that_ignores_skip_is_still_told(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    pages = Pages(total=400)
    pages.ignore_skip = True
    with pytest.raises(SyncFailed, match="repeated the previous page"):
        await read(tmp_path, aiohttp_server, pages, page_size=40, page_window=5)
