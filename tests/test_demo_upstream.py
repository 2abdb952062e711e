"""The built-in upstream: a rendered NDJSON file serves both formats exactly as the generator does, and
its delays stand in for an upstream across a network."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import orjson
from pytest_aiohttp import AiohttpServer

from service.demo_upstream.products import SyntheticCatalog
from service.demo_upstream.server import Latency, ProductList, RenderedFeed, build_demo_app, iter_ndjson
from tests.service_process import free_port

COUNT = 1_234  # three NDJSON blocks: two full, one short


def render(path: Path, count: int = COUNT) -> Path:
    path.write_bytes(b"".join(iter_ndjson(SyntheticCatalog(count))))
    return path


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read()


async def test_a_rendered_feed_serves_the_same_pages_and_ndjson_as_the_generator(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    generated = await aiohttp_server(build_demo_app(SyntheticCatalog(COUNT)))
    rendered = await aiohttp_server(build_demo_app(feed=RenderedFeed(render(tmp_path / "feed.ndjson"))))
    queries = ["limit=100&skip=0", "limit=100&skip=1200", "limit=0", "skip=1234", "skip=5000", "limit=7"]
    for query in queries:
        expected = await get(str(generated.make_url(f"/products?{query}")))
        got = await get(str(rendered.make_url(f"/products?{query}")))
        assert got == expected, query
        assert orjson.loads(got[1])["total"] == COUNT
    page = orjson.loads((await get(str(rendered.make_url("/products?limit=100&skip=1200"))))[1])
    assert [p["id"] for p in page["products"]] == list(range(1201, 1235))
    assert page["limit"] == 34
    assert await get(str(rendered.make_url("/products.ndjson"))) == await get(
        str(generated.make_url("/products.ndjson"))
    )


async def test_a_rendered_feed_without_a_final_newline_keeps_its_last_product(tmp_path: Path) -> None:
    path = render(tmp_path / "feed.ndjson", 3)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    feed = RenderedFeed(path)
    assert len(feed) == 3
    assert [orjson.loads(b"[" + feed.page_items(0, 3) + b"]")[i]["id"] for i in range(3)] == [1, 2, 3]
    assert b"".join(feed.ndjson_blocks()) == path.read_bytes()


async def test_page_delay_holds_every_page(aiohttp_server: AiohttpServer) -> None:
    server = await aiohttp_server(build_demo_app(SyntheticCatalog(10), latency=Latency(page_s=0.2)))
    for skip in (0, 2, 10):
        started = time.monotonic()
        code, body = await get(str(server.make_url(f"/products?limit=2&skip={skip}")))
        assert code == 200 and orjson.loads(body)["total"] == 10
        assert time.monotonic() - started >= 0.2


async def test_chunk_delay_spaces_the_ndjson_blocks(aiohttp_server: AiohttpServer) -> None:
    products = ProductList(SyntheticCatalog(COUNT))
    server = await aiohttp_server(build_demo_app(feed=products, latency=Latency(chunk_s=0.15)))
    arrivals: list[float] = []
    body = b""
    async with aiohttp.ClientSession() as http, http.get(server.make_url("/products.ndjson")) as response:
        started = time.monotonic()
        async for block in response.content.iter_any():
            body += block
            arrivals.append(time.monotonic() - started)
    assert body == b"".join(products.ndjson_blocks())
    assert body.count(b"\n") == COUNT
    # Three blocks, each held 0.15 s before it was sent: the last bytes come after all three waits.
    assert arrivals[-1] >= 0.45


async def test_the_command_serves_a_rendered_file_with_delays(tmp_path: Path) -> None:
    path = render(tmp_path / "feed.ndjson")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.demo_upstream",
        "--port",
        str(port),
        "--ndjson-file",
        str(path),
        "--page-delay-ms",
        "300",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert banner.startswith(f"serving {COUNT} products".encode())
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):  # the banner comes just before the socket is bound
            try:
                started = time.monotonic()
                code, body = await get(f"{base}/products?limit=5&skip=10")
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        assert code == 200 and time.monotonic() - started >= 0.3
        assert [p["id"] for p in orjson.loads(body)["products"]] == [11, 12, 13, 14, 15]
        assert await get(f"{base}/products.ndjson") == (200, path.read_bytes())
    finally:
        proc.terminate()
        await proc.wait()


async def test_an_empty_rendered_feed_is_an_empty_catalog(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    (tmp_path / "empty.ndjson").write_bytes(b"")
    server = await aiohttp_server(build_demo_app(feed=RenderedFeed(tmp_path / "empty.ndjson")))
    code, body = await get(str(server.make_url("/products?limit=10")))
    assert code == 200 and orjson.loads(body) == {"products": [], "total": 0, "skip": 0, "limit": 0}
    assert await get(str(server.make_url("/products.ndjson"))) == (200, b"")


async def test_the_command_refuses_a_missing_feed_file(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.demo_upstream",
        "--ndjson-file",
        str(tmp_path / "missing.ndjson"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"missing.ndjson: no such file" in err


async def test_the_command_refuses_a_negative_delay() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.demo_upstream", "--page-delay-ms", "-5", stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"delays cannot be negative" in err
