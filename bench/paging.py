"""How fast the DummyJSON pager reads a feed whose pages each take a while to answer, by window.

    PYTHONPATH=. .venv/bin/python -m bench.paging                 # 5,000 products, 100 a page, 100 ms a page
    PYTHONPATH=. .venv/bin/python -m bench.paging --latency-ms 20 --windows 1 2 5 10

Only the reader (``DummyJsonSource``), against an aiohttp upstream on loopback that sleeps per page: the
figure the window changes. Printed next to the latency limit, window x page size / latency.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from service.settings import Settings
from service.upstream.dummyjson import DummyJsonSource
from tests.upstream import FeedControl, dummyjson_app, make_product


async def _read(url: str, page_size: int, window: int) -> tuple[int, float]:
    settings = Settings(db_path=Path("unused.db"), page_size=page_size, page_window=window)
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        count = 0
        async for chunk in DummyJsonSource(http, url, settings).chunks():
            count += len(chunk.items)
        return count, time.perf_counter() - started


async def run(products: int, page_size: int, latency_ms: float, windows: list[int]) -> None:
    control = FeedControl(
        products=[make_product(i) for i in range(1, products + 1)], page_delay_s=latency_ms / 1000
    )
    runner = web.AppRunner(dummyjson_app(control))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/products"
    print(f"{products:,} products, {page_size} a page, {latency_ms:g} ms a page (loopback upstream)")
    print(f"{'window':>6}  {'seconds':>8}  {'products/s':>10}  {'latency limit':>13}  {'vs window 1':>11}")
    first_rate: float | None = None
    try:
        for window in windows:
            count, seconds = await _read(url, page_size, window)
            rate = count / seconds
            first_rate = first_rate or rate
            limit = window * page_size / (latency_ms / 1000) if latency_ms else float("inf")
            print(
                f"{window:>6}  {seconds:>8.2f}  {rate:>10,.0f}  {limit:>13,.0f}  {rate / first_rate:>10.2f}x"
            )
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 5])
    args = parser.parse_args()
    asyncio.run(run(args.products, args.page_size, args.latency_ms, args.windows))


if __name__ == "__main__":
    main()
