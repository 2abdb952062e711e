"""The sync into PostgreSQL against the ceiling of COPY, and the status answer during a large sync.

    PYTHONPATH=. .venv/bin/python -m bench.postgres [--products 200000] [--work-dir DIR]

A throwaway cluster (``scripts/throwaway_postgres.py``: initdb in a temporary directory, loopback only)
holds two databases. Our service syncs the demo upstream's NDJSON feed into the first: fresh, then an
identical re-sync in a new process (which must rewrite no row). The ceiling copies the rows our sync
stored into a table of the same shape (``LIKE products INCLUDING ALL``: its unique indexes, defaults and
checks, and the catalog's foreign keys, which LIKE leaves out) with ``COPY``, in batches of 1,000 rows, a
transaction each, as our batches commit; and, for reference, the same without the foreign keys, and once
in a single COPY. Then 50 connections poll the status for 10 s while a second service syncs the same feed
into the second database. Prints the figures and the goals; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.feeds import feed_file
from bench.load import load_tool, poll
from bench.procs import LOOPBACK, free_port, tree_cpu_seconds, upstream
from bench.service import service
from scripts.throwaway_postgres import running_cluster
from service.catalog.sql import COPIED_PRODUCT_COLUMNS

CEILING_BATCH = 1000


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def _rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(f"SELECT {', '.join(COPIED_PRODUCT_COLUMNS)} FROM products ORDER BY id"))
    finally:
        await conn.close()


async def _rewritten(url: str, run_id: int) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM products WHERE updated_run = $1", run_id)
        return count
    finally:
        await conn.close()


@dataclass(frozen=True)
class CopyTimes:
    seconds: float
    client_cpu_s: float  # this process, which encodes and sends the rows
    server_cpu_s: float  # the PostgreSQL server's processes


async def _copy_ceiling(url: str, rows: Sequence[asyncpg.Record], batch: int, *, foreign_keys: bool) -> float:
    """Seconds to COPY ``rows`` into a fresh table shaped like ``products``, ``batch`` rows a transaction
    (with the catalog's foreign keys, or without)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS ceiling")
        await conn.execute("CREATE TABLE ceiling (LIKE products INCLUDING ALL)")
        if foreign_keys:  # the catalog's own: a product's category and runs exist (LIKE copies no FK)
            await conn.execute(
                "ALTER TABLE ceiling ADD FOREIGN KEY (category_id) REFERENCES categories (id),"
                " ADD FOREIGN KEY (created_run) REFERENCES runs (id),"
                " ADD FOREIGN KEY (updated_run) REFERENCES runs (id),"
                " ADD FOREIGN KEY (archived_run) REFERENCES runs (id) ON DELETE SET NULL"
            )
        records = [tuple(row) for row in rows]
        started = time.perf_counter()
        for start in range(0, len(records), batch):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "ceiling", records=records[start : start + batch], columns=list(COPIED_PRODUCT_COLUMNS)
                )
        return time.perf_counter() - started
    finally:
        await conn.close()


def _timed_ceiling(
    url: str, rows: Sequence[asyncpg.Record], batch: int, postmaster: int, *, foreign_keys: bool
) -> CopyTimes:
    """:func:`_copy_ceiling` with the CPU it cost this process and the server."""
    client_before, server_before = time.process_time(), tree_cpu_seconds(postmaster)
    seconds = asyncio.run(_copy_ceiling(url, rows, batch, foreign_keys=foreign_keys))
    return CopyTimes(
        seconds, time.process_time() - client_before, tree_cpu_seconds(postmaster) - server_before
    )


def create_database(admin_url: str, name: str) -> None:
    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/product-sync-bench"))
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    count: int = args.products

    _log(f"preparing a feed of {count:,} products (cached in {args.work_dir})")
    feed = feed_file(args.work_dir, count, 0)
    run_dir = Path(tempfile.mkdtemp(prefix="product-sync-pg-run-"))
    _log("starting a throwaway PostgreSQL cluster")
    try:
        with running_cluster(free_port()) as cluster:
            admin = cluster.url("postgres")
            for name in ("sync", "load"):
                create_database(admin, name)
            url, load_url = cluster.url("sync"), cluster.url("load")
            # The server's processes are the postmaster's children: their CPU is the database's share.
            postmaster = cluster.postmaster_pid
            port = free_port()
            feed_url = f"http://{LOOPBACK}:{port}/products.ndjson"
            logs = run_dir / "logs"
            with upstream(feed, port, logs / "upstream.log"):
                _log("our sync into PostgreSQL: fresh database")
                server_before = tree_cpu_seconds(postmaster)
                with service(run_dir / "unused.db", feed_url, logs / "fresh.log", database_url=url) as svc:
                    fresh = svc.sync()
                fresh_server_cpu = tree_cpu_seconds(postmaster) - server_before
                _log("our sync into PostgreSQL: identical re-sync")
                server_before = tree_cpu_seconds(postmaster)
                with service(run_dir / "unused.db", feed_url, logs / "same.log", database_url=url) as svc:
                    same = svc.sync()
                same_server_cpu = tree_cpu_seconds(postmaster) - server_before
                rewritten = asyncio.run(_rewritten(url, same.run_id))
                _log("the ceiling: COPY of the same rows into a table of the same shape")
                rows = asyncio.run(_rows(url))
                batched = _timed_ceiling(url, rows, CEILING_BATCH, postmaster, foreign_keys=True)
                batched_no_keys = _timed_ceiling(url, rows, CEILING_BATCH, postmaster, foreign_keys=False)
                single = _timed_ceiling(url, rows, len(rows), postmaster, foreign_keys=False)
                del rows
                _log(f"status polled by {args.connections} connections while a {count:,}-product sync runs")
                with service(
                    run_dir / "unused.db", feed_url, logs / "load.log", database_url=load_url
                ) as svc:
                    run_id = svc.client.trigger()
                    while not (svc.client.status()["progress"] or {}).get("processed"):
                        time.sleep(0.02)
                    status_url = f"http://{LOOPBACK}:{svc.port}/admin/sync/status"
                    busy = poll(status_url, f"Bearer {svc.token}", args.connections, args.seconds)
                    still_running = bool(svc.client.status()["isRunning"])
                    svc.client.wait_finished(run_id, 1800)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    ceiling_rate = count / batched.seconds
    print()
    print(f"PostgreSQL, {count:,} products (NDJSON over loopback; a throwaway cluster with fsync=off)")
    print(f"{'what':<48} {'seconds':>8} {'items/s':>9} {'CPU s':>7} {'server CPU s':>12}")
    for label, result, server_cpu in (
        ("our sync, fresh database", fresh, fresh_server_cpu),
        ("our sync, identical re-sync", same, same_server_cpu),
    ):
        cells = (
            f"{result.seconds:8.2f} {result.per_second:9,.0f} {result.cpu_seconds:7.2f} {server_cpu:12.2f}"
        )
        print(f"{label:<48} {cells}")
    for label, times in (
        ("COPY, batches of 1,000 (the ceiling)", batched),
        ("COPY, batches of 1,000, no foreign keys", batched_no_keys),
        ("COPY, one statement, no foreign keys", single),
    ):
        cells = (
            f"{times.seconds:8.2f} {count / times.seconds:9,.0f} {times.client_cpu_s:7.2f}"
            f" {times.server_cpu_s:12.2f}"
        )
        print(f"{label:<48} {cells}")
    no_keys_rate = count / batched_no_keys.seconds
    print(f"{'status p99 during a sync (' + load_tool() + ')':<48} {busy.p99_ms:8.2f} ms")
    print()
    ratio = fresh.per_second / ceiling_rate
    print(f"fresh sync vs COPY ceiling: {ratio:.2f}x (goal >= 0.5x): {'met' if ratio >= 0.5 else 'NOT met'}")
    print(f"  (vs COPY without the foreign keys: {fresh.per_second / no_keys_rate:.2f}x)")
    print(
        f"identical re-sync rewrote {rewritten} rows, {same.stats['unchanged']:,} unchanged "
        f"(goal 0): {'met' if rewritten == 0 else 'NOT met'}"
    )
    print(
        f"status p99 {busy.p99_ms:.2f} ms while the sync ran (goal < 25 ms; sync still running at the end: "
        f"{'yes' if still_running else 'no'}): {'met' if busy.p99_ms < 25 and still_running else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
