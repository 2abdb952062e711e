"""A built-in upstream in DummyJSON's format (and NDJSON), served on loopback, so the service syncs out
of the box; ``python -m service.demo_upstream --count N --port P`` serves it from its own process.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from service.demo_upstream.products import DEFAULT_PRODUCT_COUNT, SyntheticCatalog
from service.settings import SourceFormat

_NDJSON_BLOCK = 500

PRODUCTS_KEY = web.AppKey("products", Sequence[Mapping[str, Any]])


def _bad_request(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400, dumps=lambda v: orjson.dumps(v).decode())


def _query_int(request: web.Request, name: str, default: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return int(raw) if raw.isdigit() else None


async def products_page(request: web.Request) -> web.Response:
    """DummyJSON semantics: limit defaults to 30, limit=0 means all, ``limit`` answers what was returned."""
    products = request.app[PRODUCTS_KEY]
    limit = _query_int(request, "limit", 30)
    skip = _query_int(request, "skip", 0)
    if limit is None:
        return _bad_request("Invalid 'limit' - must be a number")
    if skip is None:
        return _bad_request("Invalid 'skip' - must be a number")
    end = len(products) if limit == 0 else min(len(products), skip + limit)
    page = list(products[skip:end]) if skip < end else []
    body = orjson.dumps({"products": page, "total": len(products), "skip": skip, "limit": len(page)})
    return web.Response(body=body, content_type="application/json")


def iter_ndjson(products: Sequence[Mapping[str, Any]], block: int = _NDJSON_BLOCK) -> Iterator[bytes]:
    """The feed as NDJSON blocks of ``block`` lines, generated as they are sent."""
    for start in range(0, len(products), block):
        yield b"".join(
            orjson.dumps(p, option=orjson.OPT_APPEND_NEWLINE) for p in products[start : start + block]
        )


async def products_ndjson(request: web.Request) -> web.StreamResponse:
    products = request.app[PRODUCTS_KEY]
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson", "X-Total-Count": str(len(products))}
    )
    await response.prepare(request)
    for block in iter_ndjson(products):
        await response.write(block)
    await response.write_eof()
    return response


def build_demo_app(
    products: Sequence[Mapping[str, Any]] | None = None, ndjson_file: Path | None = None
) -> web.Application:
    """``GET /products?limit=&skip=`` (DummyJSON) and ``GET /products.ndjson`` over ``products``.

    ``ndjson_file``: serve that pre-rendered feed instead, so a benchmark measures the client, not
    this generator.
    """
    app = web.Application()
    app[PRODUCTS_KEY] = products if products is not None else SyntheticCatalog()
    app.router.add_get("/products", products_page)
    if ndjson_file is None:
        app.router.add_get("/products.ndjson", products_ndjson)
    else:
        total = str(len(app[PRODUCTS_KEY]))

        async def prerendered(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(
                ndjson_file, headers={"Content-Type": "application/x-ndjson", "X-Total-Count": total}
            )

        app.router.add_get("/products.ndjson", prerendered)
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
        "--ndjson-file", type=Path, help="serve this already rendered feed of --count products as NDJSON"
    )
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("--host must be a loopback address")
    host = f"[{args.host}]" if ":" in args.host else args.host
    catalog = SyntheticCatalog(args.count, args.seed, args.variant)
    if args.prerender is not None:
        with args.prerender.open("wb") as out:
            for block in iter_ndjson(catalog):
                out.write(block)
    print(
        f"serving {args.count} products: http://{host}:{args.port}/products and /products.ndjson", flush=True
    )
    web.run_app(
        build_demo_app(catalog, args.prerender or args.ndjson_file),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )
    return 0
