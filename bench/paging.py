"""How fast the DummyJSON pager reads a feed whose pages each take a while to answer, by window.

    PYTHONPATH=. .venv/bin/python -m bench.paging                 # 5,000 products, 100 a page, 100 ms a page
    PYTHONPATH=. .venv/bin/python -m bench.paging --latency-ms 20 --windows 1 2 5 10
    PYTHONPATH=. .venv/bin/python -m bench.paging --products 200000 --latency-ms 0    # the reader's CPU

Only the reader (``DummyJsonSource``), against the demo upstream in its own process serving a rendered
feed, each page held ``--latency-ms``: the figure the window changes, next to the latency limit (window x
page size / latency), and the reader's own CPU time (this process; the upstream's is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiohttp

from bench.feeds import feed_file
from bench.procs import LOOPBACK, free_port, upstream
from service.settings import Settings
from service.upstream.dummyjson import DummyJsonSource


async def _read(url: str, page_size: int, window: int) -> tuple[int, float, float]:
    settings = Settings(db_path=Path("unused.db"), page_size=page_size, page_window=window)
    async with aiohttp.ClientSession() as http:
        started, cpu = time.perf_counter(), time.process_time()
        count = 0
        async for chunk in DummyJsonSource(http, url, settings).chunks():
            count += len(chunk.items)
        return count, time.perf_counter() - started, time.process_time() - cpu


def run(products: int, page_size: int, latency_ms: float, windows: list[int], work_dir: Path) -> None:
    feed = feed_file(work_dir, products, 0)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}/products"
    print(f"{products:,} products, {page_size} a page, {latency_ms:g} ms a page (demo upstream on loopback)")
    print(
        f"{'window':>6}  {'seconds':>8}  {'products/s':>10}  {'reader CPU s':>12}  {'latency limit':>13}"
        f"  {'vs window 1':>11}"
    )
    first_rate: float | None = None
    with upstream(feed, port, work_dir / "paging-upstream.log", page_delay_ms=latency_ms):
        for window in windows:
            count, seconds, cpu = asyncio.run(_read(url, page_size, window))
            rate = count / seconds
            first_rate = first_rate or rate
            limit = f"{window * page_size / (latency_ms / 1000):,.0f}" if latency_ms else "-"
            print(
                f"{window:>6}  {seconds:>8.2f}  {rate:>10,.0f}  {cpu:>12.2f}  {limit:>13}"
                f"  {rate / first_rate:>10.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/product-sync-bench"))
    args = parser.parse_args()
    run(args.products, args.page_size, args.latency_ms, args.windows, args.work_dir)


if __name__ == "__main__":
    main()
