"""A built-in upstream in DummyJSON's format (and NDJSON), served on loopback, so the service syncs out
of the box; ``python -m service.demo_upstream --count N --port P`` serves it from its own process.

It can also stand in for an upstream across a network: ``--page-delay-ms`` and ``--chunk-delay-ms``
make every page (and every NDJSON block) take that long, as a round trip would.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import mmap
import os
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from service.demo_upstream.products import DEFAULT_PRODUCT_COUNT, SyntheticCatalog
from service.settings import SourceFormat

_NDJSON_BLOCK = 500


class ServedFeed(Protocol):
    """The products an upstream serves, rendered as each format needs them."""

    def __len__(self) -> int: ...

    def page_items(self, start: int, stop: int) -> bytes:
        """Products ``start`` to ``stop`` as the members of a JSON array (comma separated, no brackets)."""
        ...

    def ndjson_blocks(self) -> Iterator[bytes]:
        """The whole feed as NDJSON, in blocks of a few hundred lines."""
        ...

    def rendered_file(self) -> Path | None:
        """A file holding the whole NDJSON feed, when there is one: it is sent as it is."""
        ...


class ProductList:
    """Products held as dicts (or generated on access, as :class:`SyntheticCatalog` does)."""

    def __init__(self, products: Sequence[Mapping[str, Any]]) -> None:
        self._products = products

    def __len__(self) -> int:
        return len(self._products)

    def page_items(self, start: int, stop: int) -> bytes:
        return b",".join(orjson.dumps(product) for product in self._products[start:stop])

    def ndjson_blocks(self) -> Iterator[bytes]:
        return iter_ndjson(self._products)

    def rendered_file(self) -> None:
        return None


class RenderedFeed:
    """An NDJSON file rendered beforehand, served from a memory map: a benchmark then measures the
    client, not this generator. Pages are slices of its lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            # An empty file cannot be mapped; it is an empty feed.
            self._map: mmap.mmap | bytes = (
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            )
        # Where each line starts, and where the last one ends: page n is one slice per line.
        self._starts = array("q", [0])
        position = self._map.find(b"\n")
        while position != -1:
            self._starts.append(position + 1)
            position = self._map.find(b"\n", position + 1)
        if self._starts[-1] != len(self._map):
            self._starts.append(len(self._map) + 1)  # a last line without its newline

    def __len__(self) -> int:
        return len(self._starts) - 1

    def page_items(self, start: int, stop: int) -> bytes:
        starts, data = self._starts, self._map
        return b",".join(data[starts[i] : starts[i + 1] - 1] for i in range(start, min(stop, len(self))))

    def ndjson_blocks(self) -> Iterator[bytes]:
        starts = self._starts
        for first in range(0, len(self), _NDJSON_BLOCK):
            last = min(len(self), first + _NDJSON_BLOCK)
            yield self._map[starts[first] : min(starts[last], len(self._map))]

    def rendered_file(self) -> Path:
        return self.path


@dataclass(frozen=True, slots=True)
class Latency:
    """How long each page, and each NDJSON block, waits before it is sent."""

    page_s: float = 0.0
    chunk_s: float = 0.0


FEED_KEY = web.AppKey("feed", ServedFeed)
LATENCY_KEY = web.AppKey("latency", Latency)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400, dumps=lambda v: orjson.dumps(v).decode())


def _query_int(request: web.Request, name: str, default: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return int(raw) if raw.isdigit() else None


async def products_page(request: web.Request) -> web.Response:
    """DummyJSON semantics: limit defaults to 30, limit=0 means all, ``limit`` answers what was returned."""
    feed = request.app[FEED_KEY]
    limit = _query_int(request, "limit", 30)
    skip = _query_int(request, "skip", 0)
    if limit is None:
        return _bad_request("Invalid 'limit' - must be a number")
    if skip is None:
        return _bad_request("Invalid 'skip' - must be a number")
    latency = request.app.get(LATENCY_KEY)
    if latency is not None and latency.page_s:
        await asyncio.sleep(latency.page_s)
    total = len(feed)
    end = total if limit == 0 else min(total, skip + limit)
    count = max(0, end - skip)
    items = feed.page_items(skip, end) if count else b""
    body = b'{"products":[%b],"total":%d,"skip":%d,"limit":%d}' % (items, total, skip, count)
    return web.Response(body=body, content_type="application/json")


def iter_ndjson(products: Sequence[Mapping[str, Any]], block: int = _NDJSON_BLOCK) -> Iterator[bytes]:
    """The feed as NDJSON blocks of ``block`` lines, generated as they are sent."""
    for start in range(0, len(products), block):
        yield b"".join(
            orjson.dumps(p, option=orjson.OPT_APPEND_NEWLINE) for p in products[start : start + block]
        )


def _ndjson_headers(feed: ServedFeed) -> dict[str, str]:
    return {"Content-Type": "application/x-ndjson", "X-Total-Count": str(len(feed))}


async def products_ndjson(request: web.Request) -> web.StreamResponse:
    feed = request.app[FEED_KEY]
    latency = request.app.get(LATENCY_KEY) or Latency()
    rendered = feed.rendered_file()
    if rendered is not None and not latency.chunk_s:
        return web.FileResponse(rendered, headers=_ndjson_headers(feed))  # sendfile: no CPU here
    response = web.StreamResponse(headers=_ndjson_headers(feed))
    await response.prepare(request)
    for block in feed.ndjson_blocks():
        if latency.chunk_s:
            await asyncio.sleep(latency.chunk_s)
        await response.write(block)
    await response.write_eof()
    return response


def build_demo_app(
    products: Sequence[Mapping[str, Any]] | None = None,
    *,
    feed: ServedFeed | None = None,
    latency: Latency | None = None,
) -> web.Application:
    """``GET /products?limit=&skip=`` (DummyJSON) and ``GET /products.ndjson`` over ``feed``, or else
    ``products``, or else the synthetic demo catalog."""
    app = web.Application()
    app[FEED_KEY] = (
        feed if feed is not None else ProductList(products if products is not None else SyntheticCatalog())
    )
    app[LATENCY_KEY] = latency or Latency()
    app.router.add_get("/products", products_page)
    app.router.add_get("/products.ndjson", products_ndjson)
    return app


class DemoUpstream:
    """The demo app on an ephemeral loopback port, for the service's no-source default and for tests.

    ``products`` (a sequence of DummyJSON-shaped dicts) wins over ``count`` synthetic products.
    """

    def __init__(
        self,
        products: Sequence[Mapping[str, Any]] | None = None,
        *,
        count: int = DEFAULT_PRODUCT_COUNT,
        source_format: SourceFormat = "dummyjson",
    ) -> None:
        self._app = build_demo_app(products if products is not None else SyntheticCatalog(count))
        self._source_format: SourceFormat = source_format
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    async def start(self) -> str:
        """Serve on 127.0.0.1 (port chosen by the OS); return the feed URL for the chosen format."""
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self._base_url = f"http://127.0.0.1:{port}"
        return self.url_for(self._source_format)

    def url_for(self, source_format: SourceFormat) -> str:
        if self._base_url is None:
            raise RuntimeError("demo upstream not started")
        return (
            f"{self._base_url}/products.ndjson" if source_format == "ndjson" else f"{self._base_url}/products"
        )

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a synthetic DummyJSON/NDJSON product feed on loopback."
    )
    parser.add_argument("--count", type=int, default=DEFAULT_PRODUCT_COUNT)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (127.0.0.1 or ::1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variant", type=int, default=0, help="N > 0: 10%% of the prices raised by N dollars"
    )
    parser.add_argument("--prerender", type=Path, help="render the NDJSON feed to this file first, serve it")
    parser.add_argument(
        "--ndjson-file", type=Path, help="serve this already rendered NDJSON feed (both formats), not --count"
    )
    parser.add_argument(
        "--page-delay-ms", type=float, default=0.0, help="every DummyJSON page waits this long (a round trip)"
    )
    parser.add_argument(
        "--chunk-delay-ms",
        type=float,
        default=0.0,
        help=f"every NDJSON block of {_NDJSON_BLOCK} lines waits this long before it is sent",
    )
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("--host must be a loopback address")
    if args.page_delay_ms < 0 or args.chunk_delay_ms < 0:
        parser.error("delays cannot be negative")
    host = f"[{args.host}]" if ":" in args.host else args.host
    rendered = args.prerender or args.ndjson_file
    if args.ndjson_file is not None and not args.ndjson_file.is_file():
        parser.error(f"--ndjson-file {args.ndjson_file}: no such file")
    if args.prerender is not None:
        with args.prerender.open("wb") as out:
            for block in iter_ndjson(SyntheticCatalog(args.count, args.seed, args.variant)):
                out.write(block)
    feed: ServedFeed = (
        RenderedFeed(rendered)
        if rendered is not None
        else ProductList(SyntheticCatalog(args.count, args.seed, args.variant))
    )
    latency = Latency(args.page_delay_ms / 1000, args.chunk_delay_ms / 1000)
    print(
        f"serving {len(feed)} products: http://{host}:{args.port}/products and /products.ndjson", flush=True
    )
    web.run_app(
        build_demo_app(feed=feed, latency=latency),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )
    return 0
