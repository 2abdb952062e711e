"""A fault-injecting upstream: one aiohttp app on loopback with a mode per fault.

It runs in its own thread and event loop, so a test can measure the service's answers from its own
loop without the upstream's work getting in the way, and switch faults while a run is in progress.
``GET /products`` serves DummyJSON pages, ``GET /feed`` NDJSON; a fault applies to every request for a
page at or after ``fault_from_skip`` (NDJSON: to every request) until the upstream is healed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any, ClassVar

import orjson
from aiohttp import web

HUGE_LINE_BYTES = 50 * 1024 * 1024
_HTML = b"<!DOCTYPE html><html><head><title>Maintenance</title></head><body><h1>Back soon</h1></body></html>"


class Fault(StrEnum):
    HEALTHY = "healthy"
    REFUSE = "refuse connections"
    STALL_BEFORE_BODY = "stall before the body"
    STALL_MID_BODY = "stall in the middle of the body"
    STATUS_500 = "500"
    STATUS_502 = "502"
    STATUS_503 = "503"
    STATUS_429 = "429 without Retry-After"
    STATUS_429_RETRY_AFTER = "429 with Retry-After"
    STATUS_503_RETRY_AFTER = "503 with Retry-After"
    CUT_MID_JSON = "body cut off mid-JSON"
    INVALID_UTF8 = "invalid UTF-8"
    HUGE_LINE = "a line of 50 MB"
    CONTENT_LENGTH_LONG = "Content-Length longer than the body"
    CONTENT_LENGTH_SHORT = "Content-Length shorter than the body"
    TOTAL_CHANGES = "total changes between pages"
    REPEAT_PAGE = "a page repeated"
    REDIRECT_LOOP = "redirect loop"
    HTML = "HTML instead of JSON"


RETRY_AFTER_S = 1


def _page(products: Sequence[dict[str, Any]], skip: int, limit: int, total: int) -> bytes:
    chosen = list(products[skip : skip + limit])
    return orjson.dumps({"products": chosen, "total": total, "skip": skip, "limit": len(chosen)})


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _raw_response(request: web.Request, head: bytes, body: bytes) -> web.StreamResponse:
    """Write a hand-made HTTP answer straight to the socket, then close it: aiohttp would fix the lies."""
    transport = request.transport
    assert transport is not None
    transport.write(head + body)
    transport.close()
    raise web.HTTPInternalServerError()  # never sent: the connection is gone


class FaultUpstream:
    """The upstream the fault tests point the service at. Thread-safe knobs: ``fault``, ``products``."""

    def __init__(self, products: Sequence[dict[str, Any]]) -> None:
        self.products: Sequence[dict[str, Any]] = products
        self.fault = Fault.HEALTHY
        self.fault_from_skip = 0
        self.request_times: list[float] = []
        self.page_request_times: dict[int, list[float]] = {}  # per page (skip), as pages are concurrent
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-upstream", daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._huge: bytes | None = None

    # --- lifecycle (called from the test's thread) -------------------------------------------

    @property
    def products_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/products"

    @property
    def feed_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed"

    def start(self) -> FaultUpstream:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        self.fault = Fault.HEALTHY  # releases stalled handlers
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def inject(self, fault: Fault, from_skip: int = 0) -> None:
        """Switch to ``fault``; refusing connections means closing the listening socket."""
        if fault is Fault.HUGE_LINE and self._huge is None:
            self._huge = self._build_huge()
        self.fault_from_skip = from_skip
        listening = self._site is not None
        self.fault = fault
        if fault is Fault.REFUSE and listening:
            self._call(self._close_site())
        elif fault is not Fault.REFUSE and not listening:
            self._call(self._open_site())

    def heal(self) -> None:
        self.inject(Fault.HEALTHY)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    # --- inside the upstream's loop ------------------------------------------------------------

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/products", self._products)
        app.router.add_get("/feed", self._feed)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._open_site()

    async def _open_site(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def _close_site(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stall(self, fault: Fault) -> None:
        # The fault is switched from the test's thread, so poll it rather than wait on a loop-bound Event.
        while self.fault is fault:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def _build_huge(self) -> bytes:
        product = {**self.products[0], "description": "x" * HUGE_LINE_BYTES}
        return orjson.dumps({"products": [product], "total": len(self.products), "skip": 0, "limit": 1})

    async def _products(self, request: web.Request) -> web.StreamResponse:
        self.request_times.append(time.monotonic())
        try:
            limit = int(request.query.get("limit", "30"))
            skip = int(request.query.get("skip", "0"))
        except ValueError:
            return web.json_response({"message": "bad limit or skip"}, status=400)
        self.page_request_times.setdefault(skip, []).append(self.request_times[-1])
        total = len(self.products)
        fault = self.fault if skip >= self.fault_from_skip else Fault.HEALTHY
        handler = self._FAULTS.get(fault)
        if handler is None:
            return _json(_page(self.products, skip, limit, total))
        response: web.StreamResponse = await handler(self, request, skip, limit, total)
        return response

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        """NDJSON: healthy, a 50 MB line after a few good ones, or a stream cut off mid-line."""
        self.request_times.append(time.monotonic())
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.headers["X-Total-Count"] = str(len(self.products))
        await response.prepare(request)
        for index, product in enumerate(self.products):
            if index == 10 and self.fault is Fault.HUGE_LINE:
                chunk = b'{"id": 999999, "title": "' + b"y" * (1024 * 1024) + b"..."
                for _ in range(HUGE_LINE_BYTES // len(chunk) + 1):
                    await response.write(chunk)
            if index == 10 and self.fault is Fault.CUT_MID_JSON:
                await response.write(b'{"id": 11, "title": "cut')
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(orjson.dumps(product) + b"\n")
        await response.write_eof()
        return response

    # One handler per fault: (self, request, skip, limit, total) -> response.
    async def _refused(self, request: web.Request, skip: int, limit: int, total: int) -> web.StreamResponse:
        # A connection accepted while the site was closing: answer as if healthy.
        return _json(_page(self.products, skip, limit, total))

    async def _stall_before(
        self, request: web.Request, skip: int, limit: int, total: int
    ) -> web.StreamResponse:
        await self._stall(Fault.STALL_BEFORE_BODY)
        return _json(_page(self.products, skip, limit, total))

    async def _stall_mid(self, request: web.Request, skip: int, limit: int, total: int) -> web.StreamResponse:
        body = _page(self.products, skip, limit, total)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        await self._stall(Fault.STALL_MID_BODY)
        await response.write(body[len(body) // 2 :])
        return response

    @staticmethod
    def _status(code: int, retry_after: bool) -> Callable[..., Awaitable[web.StreamResponse]]:
        async def answer(
            self: FaultUpstream, request: web.Request, skip: int, limit: int, total: int
        ) -> web.StreamResponse:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if retry_after else None
            return web.json_response({"message": f"fault {code}"}, status=code, headers=headers)

        return answer

    async def _cut(self, request: web.Request, skip: int, limit: int, total: int) -> web.StreamResponse:
        body = _page(self.products, skip, limit, total)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        return _raw_response(request, head, body[: len(body) // 2])

    async def _invalid_utf8(
        self, request: web.Request, skip: int, limit: int, total: int
    ) -> web.StreamResponse:
        body = _page(self.products, skip, limit, total).replace(b'"title":"', b'"title":"\xff\xfe\xc3(', 1)
        return web.Response(body=body, content_type="application/json")

    async def _huge_line(self, request: web.Request, skip: int, limit: int, total: int) -> web.StreamResponse:
        assert self._huge is not None
        return web.Response(body=self._huge, content_type="application/json")

    async def _long_length(
        self, request: web.Request, skip: int, limit: int, total: int
    ) -> web.StreamResponse:
        body = _page(self.products, skip, limit, total)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            len(body) + 1000
        )
        return _raw_response(request, head, body)

    async def _short_length(
        self, request: web.Request, skip: int, limit: int, total: int
    ) -> web.StreamResponse:
        body = _page(self.products, skip, limit, total)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            len(body) // 2
        )
        return _raw_response(request, head, body)

    async def _total_changes(
        self, request: web.Request, skip: int, limit: int, total: int
    ) -> web.StreamResponse:
        return _json(_page(self.products, skip, limit, total + 7))

    async def _repeat(self, request: web.Request, skip: int, limit: int, total: int) -> web.StreamResponse:
        previous = max(0, skip - limit)
        page = orjson.loads(_page(self.products, previous, limit, total))
        page["skip"] = skip  # claims to be the page asked for, but carries the previous page's products
        return web.Response(body=orjson.dumps(page), content_type="application/json")

    async def _redirect(self, request: web.Request, skip: int, limit: int, total: int) -> web.StreamResponse:
        raise web.HTTPFound(str(request.rel_url))

    async def _html(self, request: web.Request, skip: int, limit: int, total: int) -> web.StreamResponse:
        return web.Response(body=_HTML, content_type="text/html")

    _FAULTS: ClassVar[dict[Fault, Callable[..., Awaitable[web.StreamResponse]]]] = {
        Fault.REFUSE: _refused,
        Fault.STALL_BEFORE_BODY: _stall_before,
        Fault.STALL_MID_BODY: _stall_mid,
        Fault.STATUS_500: _status(500, False),
        Fault.STATUS_502: _status(502, False),
        Fault.STATUS_503: _status(503, False),
        Fault.STATUS_429: _status(429, False),
        Fault.STATUS_429_RETRY_AFTER: _status(429, True),
        Fault.STATUS_503_RETRY_AFTER: _status(503, True),
        Fault.CUT_MID_JSON: _cut,
        Fault.INVALID_UTF8: _invalid_utf8,
        Fault.HUGE_LINE: _huge_line,
        Fault.CONTENT_LENGTH_LONG: _long_length,
        Fault.CONTENT_LENGTH_SHORT: _short_length,
        Fault.TOTAL_CHANGES: _total_changes,
        Fault.REPEAT_PAGE: _repeat,
        Fault.REDIRECT_LOOP: _redirect,
        Fault.HTML: _html,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def fault_upstream(products: Sequence[dict[str, Any]]) -> Any:
    upstream = FaultUpstream(products).start()
    try:
        yield upstream
    finally:
        upstream.stop()
