"""Upstream faults, bad items and interruptions, each through the real client, engine and SQLite catalog."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from service.demo_upstream.products import SyntheticCatalog, demo_product
from service.demo_upstream.server import FEED_KEY, ProductList, build_demo_app, products_page
from service.ledger.records import RunNoLongerRunning
from tests.conftest import BOTH_BACKENDS
from tests.engine_fixtures import Harness, harness

pytestmark = BOTH_BACKENDS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Upstream:
    """A loopback upstream whose first answers are faults, then the normal demo feed."""

    def __init__(self, products: Any = None) -> None:
        self.products = SyntheticCatalog(25) if products is None else products
        self.request_times: list[float] = []
        self.faults: list[Handler] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.request_times.append(time.monotonic())
        if self.faults:
            return await self.faults.pop(0)(request)
        return await products_page(request)

    async def start(self, aiohttp_server: AiohttpServer, path: str = "/products") -> str:
        app = web.Application()
        app[FEED_KEY] = ProductList(self.products)
        app.router.add_get("/products", self.handle)
        server = await aiohttp_server(app)
        return str(server.make_url(path))


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": "nope"}, status=code, headers=headers)

    return answer


async def stall(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"products": [')
    await asyncio.sleep(30)
    return response


async def cut_off(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "5000"})
    await response.prepare(request)
    await response.write(orjson.dumps({"products": [demo_product(0)]})[:300])
    assert request.transport is not None
    request.transport.close()
    return response


def body(raw: bytes) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=raw, content_type="application/json")

    return answer


async def assert_failed(h: Harness, url: str, message: str, **overrides: Any) -> None:
    run = await h.sync(url, **overrides)
    assert run.status == "error"
    assert run.error_message == message
    await h.assert_ledger_matches_catalog(run.id)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_fails_after_the_retries(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    port = free_port()
    async with harness(tmp_path, **store_settings) as h:
        run = await h.sync(f"http://127.0.0.1:{port}/products")
        assert run.status == "error"
        assert run.error_message is not None
        assert run.error_message.startswith(f"Cannot connect to upstream 127.0.0.1:{port} (")
        assert run.error_message.endswith("after 4 attempts (page skip=0)")


async def test_a_read_that_stalls_past_the_timeout_is_a_network_timeout(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    upstream.faults = [stall] * 4
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings, read_timeout_s=0.2) as h:
        await assert_failed(h, url, "Network timeout after 4 attempts (page skip=0)")
    assert len(upstream.request_times) == 4


async def test_503_then_success_is_retried(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    upstream.faults = [status(503), status(502)]
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings, page_size=10) as h:
        run = await h.sync(url)
        assert (run.status, run.created, run.error_message) == ("success", 25, None)
    assert len(upstream.request_times) == 2 + 3


async def test_503_forever_fails_with_the_status_and_attempts(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    upstream.faults = [status(503)] * 10
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings) as h:
        await assert_failed(h, url, "Upstream answered 503 after 4 attempts (page skip=0)")
    assert len(upstream.request_times) == 4


async def test_a_failure_on_a_later_page_keeps_the_committed_pages_counted(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    url = await upstream.start(aiohttp_server)

    async def first_page_then_fail(request: web.Request) -> web.StreamResponse:
        upstream.faults = [status(500)] * 10
        return await products_page(request)

    upstream.faults = [first_page_then_fail]
    async with harness(tmp_path, **store_settings, page_size=10, batch_size=10) as h:
        run = await h.sync(url)
        assert (run.status, run.error_message) == (
            "error",
            "Upstream answered 500 after 4 attempts (page skip=10)",
        )
        assert (run.created, run.processed, run.total) == (10, 10, 25)
        await h.assert_ledger_matches_catalog(run.id)


async def test_429_retry_after_is_honoured(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    upstream.faults = [status(429, {"Retry-After": "1"})]
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings, retry_max_delay_s=5.0) as h:
        run = await h.sync(url)
        assert (run.status, run.created) == ("success", 25)
    first, second = upstream.request_times[:2]
    assert second - first >= 0.95  # waited as told, not the 10 ms backoff


async def test_retry_after_is_capped_by_the_max_delay(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    upstream.faults = [status(429, {"Retry-After": "3600"})]
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings, retry_max_delay_s=0.05) as h:
        run = await h.sync(url)
        assert (run.status, run.created) == ("success", 25)
    first, second = upstream.request_times[:2]
    assert second - first < 30  # an uncapped wait would be an hour


async def test_a_body_cut_off_mid_json_is_retried_then_fails(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    upstream.faults = [cut_off] * 4
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings) as h:
        await assert_failed(h, url, "Upstream connection closed mid-response after 4 attempts (page skip=0)")


async def test_a_complete_body_that_is_broken_json_fails_without_retry(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    upstream.faults = [body(b'{"products": [{"id": 1, "tit')]
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings) as h:
        run = await h.sync(url)
        assert run.status == "error"
        assert run.error_message is not None
        assert run.error_message.startswith("Upstream sent invalid JSON (page skip=0): ")
    assert len(upstream.request_times) == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (status(404), 'Upstream answered 404 Not Found (page skip=0): {"message": "nope"}'),
        (status(401), 'Upstream answered 401 Unauthorized (page skip=0): {"message": "nope"}'),
        (
            body(b'{"items": []}'),
            "Upstream answer is not a DummyJSON products page (page skip=0): "
            "products: Field required; total: Field required; skip: Field required; limit: Field required",
        ),
        (
            body(b"[1, 2, 3]"),
            "Upstream answer is not a DummyJSON products page (page skip=0): "
            "Input should be a valid dictionary or instance of DummyJsonPage",
        ),
    ],
)
async def test_non_retryable_answers_fail_at_once(
    tmp_path: Path,
    store_settings: dict[str, Any],
    aiohttp_server: AiohttpServer,
    fault: Handler,
    message: str,
) -> None:
    upstream = Upstream()
    upstream.faults = [fault]
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings) as h:
        await assert_failed(h, url, message)
    assert len(upstream.request_times) == 1


async def test_a_total_that_changes_mid_run_fails(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    upstream = Upstream()
    page = orjson.dumps(
        {"products": [demo_product(i) for i in range(10, 20)], "total": 30, "skip": 10, "limit": 10}
    )
    url = await upstream.start(aiohttp_server)

    async def first_page(request: web.Request) -> web.StreamResponse:
        return await products_page(request)

    upstream.faults = [first_page, body(page)]
    async with harness(tmp_path, **store_settings, page_size=10) as h:
        await assert_failed(h, url, "Upstream total changed from 25 to 30 during the run (page skip=10)")


async def test_an_upstream_that_ignores_skip_fails(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    first = orjson.dumps(
        {"products": [demo_product(i) for i in range(10)], "total": 25, "skip": 0, "limit": 10}
    )
    same_page_claiming_skip_10 = orjson.dumps(
        {"products": [demo_product(i) for i in range(10)], "total": 25, "skip": 10, "limit": 10}
    )
    upstream = Upstream()
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings, page_size=10) as h:
        upstream.faults = [body(first), body(first)]
        await assert_failed(h, url, "Upstream answered skip=0 when asked for skip=10")
        upstream.faults = [body(first), body(same_page_claiming_skip_10)]
        await assert_failed(h, url, "Upstream repeated the previous page (page skip=10)")


async def test_a_feed_whose_page_repeats_the_ids_before_it_is_synced_with_item_errors(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    """Page 2 holds the ids of page 1, as a server ignoring skip would answer: but asked for the
    products either side of the boundary, this server answers them, so it pages honestly."""
    products = [demo_product(0), demo_product(1), demo_product(0), demo_product(1), demo_product(2)]
    upstream = Upstream(products)
    url = await upstream.start(aiohttp_server)
    async with harness(tmp_path, **store_settings, page_size=2) as h:
        run = await h.sync(url)
        assert (run.status, run.created, run.errors, run.processed) == ("success", 3, 2, 5)
        reasons = [reason for _, _, reason in await h.run_errors(run.id)]
        assert reasons == ["duplicate id: already at position 0", "duplicate id: already at position 1"]
        await h.assert_ledger_matches_catalog(run.id)


async def test_auth_and_extra_headers_are_sent(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    seen: list[tuple[str | None, str | None]] = []
    upstream = Upstream()
    url = await upstream.start(aiohttp_server)

    async def check(request: web.Request) -> web.StreamResponse:
        seen.append((request.headers.get("Authorization"), request.headers.get("X-Tenant")))
        return await products_page(request)

    upstream.faults = [check]
    async with harness(
        tmp_path, source_auth_header="Bearer s3cret", source_headers={"X-Tenant": "acme"}
    ) as h:
        run = await h.sync(url)
        assert run.status == "success"
    assert seen == [("Bearer s3cret", "acme")]


async def test_bad_items_are_counted_recorded_and_skipped(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    products: list[dict[str, Any]] = [dict(p) for p in SyntheticCatalog(40)]
    del products[3]["title"]
    products[10]["price"] = -4.5
    products[21]["price"] = "twelve"
    products[30] = {**products[0]}  # the same id again, in a later batch
    products[33] = {**products[31]}  # and within one batch
    server = await aiohttp_server(build_demo_app(products))
    async with harness(tmp_path, **store_settings, page_size=15) as h:
        run = await h.sync(str(server.make_url("/products")))
        assert run.status == "success"
        assert (run.created, run.errors, run.processed, run.total) == (35, 5, 40, 40)
        await h.assert_ledger_matches_catalog(run.id)
        assert await h.run_errors(run.id) == [
            (3, "4", "title: Field required"),
            (10, "11", "price: Input should be greater than or equal to 0"),
            (21, "22", "price: Input should be a valid decimal"),
            (30, "1", "duplicate id: already at position 0"),
            (33, "32", "duplicate id: already at position 31"),
        ]
        stored = await h.products()
        assert "4" not in stored and "11" not in stored and "22" not in stored and "40" in stored
        assert stored["1"]["title"] == products[0]["title"]


async def test_ndjson_bad_lines_are_item_errors(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    lines = [orjson.dumps(demo_product(i)) for i in range(12)]
    lines[2] = b'{"id": 3, "title": "Broken", "price": '
    lines[5] = orjson.dumps({**demo_product(5), "price": -1})
    lines[7] = orjson.dumps({k: v for k, v in demo_product(7).items() if k != "title"})
    lines.insert(9, b"   ")  # blank lines are not items
    lines[11] = lines[11] + b"\r"
    feed = b"\n".join(lines)  # and no newline after the last line

    async def ndjson(request: web.Request) -> web.StreamResponse:
        return web.Response(body=feed, content_type="application/x-ndjson")

    app = web.Application()
    app.router.add_get("/feed", ndjson)
    server = await aiohttp_server(app)
    async with harness(tmp_path, **store_settings, source_format="ndjson") as h:
        run = await h.sync(str(server.make_url("/feed")))
        assert run.status == "success"
        assert (run.created, run.errors, run.processed, run.total) == (9, 3, 12, None)
        errors = await h.run_errors(run.id)
        assert [(position, external_id) for position, external_id, _ in errors] == [
            (2, None),
            (5, "6"),
            (7, "8"),
        ]
        assert errors[0][2].startswith("invalid JSON: EOF while parsing")
        assert set(await h.products()) == {str(i + 1) for i in range(12)} - {"3", "6", "8"}


async def test_ndjson_line_over_the_limit_is_an_item_error_naming_the_line(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    long_line = orjson.dumps({**demo_product(2), "description": "x" * 5000})
    lines = [orjson.dumps(demo_product(0)), b"", orjson.dumps(demo_product(1)), long_line, long_line]
    feed = b"\n".join([*lines, orjson.dumps(demo_product(3))]) + b"\n"

    async def ndjson(request: web.Request) -> web.StreamResponse:
        return web.Response(body=feed, content_type="application/x-ndjson")

    app = web.Application()
    app.router.add_get("/feed", ndjson)
    server = await aiohttp_server(app)
    async with harness(
        tmp_path, **store_settings, source_format="ndjson", max_line_bytes=1024, max_error_fraction=1.0
    ) as h:
        run = await h.sync(str(server.make_url("/feed")))
        assert run.status == "success" and (run.created, run.errors, run.processed) == (3, 2, 5)
        assert await h.run_errors(run.id) == [
            (2, None, "Feed line 4 is longer than the limit of 1024 bytes"),
            (3, None, "Feed line 5 is longer than the limit of 1024 bytes"),
        ]
        assert set(await h.products()) == {str(demo_product(i)["id"]) for i in (0, 1, 3)}


async def ndjson_app(
    aiohttp_server: AiohttpServer,
    first: int,
    release: asyncio.Event | None,
    rest: int = 0,
    *,
    cut: bool = False,
) -> str:
    """An NDJSON feed that sends ``first`` lines, then waits for ``release`` (forever if None)."""

    async def feed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "X-Total-Count": str(first + rest)}
        )
        await response.prepare(request)
        await response.write(b"".join(orjson.dumps(demo_product(i)) + b"\n" for i in range(first)))
        if cut:
            assert request.transport is not None
            request.transport.close()
            return response
        if release is None:
            await asyncio.sleep(60)
        else:
            await release.wait()
        await response.write(
            b"".join(orjson.dumps(demo_product(i)) + b"\n" for i in range(first, first + rest))
        )
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/feed", feed)
    server = await aiohttp_server(app)
    return str(server.make_url("/feed"))


async def test_ndjson_stream_that_stalls_midway_fails_with_a_timeout(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    url = await ndjson_app(aiohttp_server, 7, None)
    async with harness(tmp_path, **store_settings, source_format="ndjson", read_timeout_s=0.3) as h:
        run = await h.sync(url)
        assert (run.status, run.error_message) == (
            "error",
            "Network timeout while reading the feed after line 7",
        )
        assert run.created in (
            0,
            7,
        )  # a partial batch may have been flushed by time; either way it is counted
        await h.assert_ledger_matches_catalog(run.id)


async def test_ndjson_stream_cut_off_midway_fails(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    url = await ndjson_app(aiohttp_server, 5, None, cut=True)
    async with harness(tmp_path, **store_settings, source_format="ndjson") as h:
        run = await h.sync(url)
        assert run.status == "error"
        assert run.error_message is not None
        assert run.error_message.startswith("Upstream connection broke while reading the feed after line 5")


async def test_the_whole_run_timeout_fails_the_run(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    url = await ndjson_app(aiohttp_server, 3, None)
    async with harness(
        tmp_path, **store_settings, source_format="ndjson", read_timeout_s=30, run_timeout_s=0.5
    ) as h:
        await assert_failed(h, url, "Sync timed out: the run took longer than 0.5 s")


async def wait_for_progress(h: Harness, run_id: int, processed: int) -> None:
    for _ in range(500):
        run = await h.ledger.get_run(run_id)
        assert run is not None
        if run.processed >= processed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never reached {processed} processed")


async def test_cancelling_mid_run_leaves_ledger_and_catalog_in_agreement(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    url = await ndjson_app(aiohttp_server, 2500, None)
    async with harness(tmp_path, **store_settings, source_format="ndjson", batch_size=1000) as h:
        run, task = await h.start(url, source_format="ndjson")
        await wait_for_progress(h, run.id, 2000)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await h.ledger.finish_run(run.id, "cancelled", cancelled_by="tester")
        finished = await h.ledger.get_run(run.id)
        assert finished is not None
        assert finished.created >= 2000
        assert finished.total == 2500
        assert await h.scalar("SELECT count(*) FROM products") == finished.created
        await h.assert_ledger_matches_catalog(run.id)


async def test_a_run_finished_by_someone_else_aborts_the_job_and_its_batch(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer
) -> None:
    release = asyncio.Event()
    url = await ndjson_app(aiohttp_server, 1000, release, rest=1000)
    async with harness(tmp_path, **store_settings, source_format="ndjson", batch_size=1000) as h:
        run, task = await h.start(url, source_format="ndjson")
        await wait_for_progress(h, run.id, 1000)
        assert await h.ledger.finish_run(run.id, "error", error_message="recovered as stalled")
        release.set()
        with pytest.raises(RunNoLongerRunning):
            await task
        assert await h.scalar("SELECT count(*) FROM products") == 1000  # the second batch rolled back
        await h.assert_ledger_matches_catalog(run.id)
