"""Products/s of the sync engine end to end: a synthetic upstream in its own process -> SQLite catalog.

    PYTHONPATH=. .venv/bin/python -m bench.engine_throughput --count 200000 --format ndjson

Prints one line per run: the first run creates every product, the second finds them all unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from service.catalog.tables_sink import CatalogTablesSink
from service.database.sqlite import SqliteDatabase
from service.ledger.owner import OwnerLock
from service.ledger.runs import Ledger
from service.settings import Settings, SourceFormat
from service.sync.engine import run_catalog_sync
from service.sync.job import RunContext


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_serving(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url, params={"limit": "1"}) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)


async def measure(count: int, source_format: SourceFormat, runs: int, workdir: Path) -> None:
    port = free_port()
    feed_file = workdir / "feed.ndjson"
    upstream = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "service.demo_upstream",
            "--count",
            str(count),
            "--port",
            str(port),
            "--prerender",
            str(feed_file),
        ],
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_until_serving(f"{base}/products", timeout_s=600)
        url = f"{base}/products.ndjson" if source_format == "ndjson" else f"{base}/products"
        settings = Settings(db_path=workdir / "bench.db", source_format=source_format, page_size=1000)
        db = await SqliteDatabase.open(settings.db_path, settings.migrations_dir)
        owner = OwnerLock(OwnerLock.lock_dir_for(settings.db_path))
        owner.acquire()
        ledger = Ledger(db, owner, settings.stall_timeout_s)
        try:
            async with aiohttp.ClientSession() as http:
                for number in range(1, runs + 1):
                    run = await ledger.start_run("bench", url)
                    started = time.perf_counter()
                    sink = CatalogTablesSink(ledger, db)
                    await run_catalog_sync(RunContext(run, ledger, settings, sink, http, url))
                    elapsed = time.perf_counter() - started
                    await ledger.finish_run(run.id, "success")
                    done = await ledger.get_run(run.id)
                    assert done is not None
                    print(
                        f"run {number} ({source_format}, {count} products): {elapsed:.2f} s, "
                        f"{count / elapsed:,.0f} products/s; created {done.created}, updated {done.updated}, "
                        f"unchanged {done.unchanged}, errors {done.errors}; "
                        f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB",
                        flush=True,
                    )
        finally:
            owner.release()
            await db.close()
    finally:
        upstream.terminate()
        await asyncio.wait_for(upstream.wait(), timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--format", choices=["ndjson", "dummyjson"], default="ndjson")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as workdir:
        asyncio.run(measure(args.count, args.format, args.runs, Path(workdir)))


if __name__ == "__main__":
    main()
