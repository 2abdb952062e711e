"""The sync into PostgreSQL against the ceiling of COPY, and the status answer during a large sync.

    PYTHONPATH=. .venv/bin/python -m bench.postgres [--products 200000] [--rounds 3] [--work-dir DIR]

A throwaway cluster (``scripts/throwaway_postgres.py``: initdb in a temporary directory, loopback only)
holds a database per measurement. Our service syncs the demo upstream's NDJSON feed into a fresh one;
the ceiling then copies the rows our sync stored into a table of the same shape (``LIKE products
INCLUDING ALL``: its unique indexes, defaults and checks, and the catalog's foreign keys, which LIKE
leaves out) with ``COPY``, in batches of the sync's default size, a transaction each, as our batches
commit. Then an identical re-sync in a new process (which must rewrite no row) and, for reference, the
COPY without the foreign keys and in a single statement. Last, 50 connections poll the status for 10 s
while a service syncs the same feed into a database of its own. Prints the figures and the goals; asserts
nothing.

The fresh sync (each followed by its ceiling) and the polled sync are measured ``--rounds`` times (3):
this machine's speed drifts by a fifth within minutes, so one pair of runs can land on either side of a
goal. Every round is printed; the goals are judged on the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.feeds import feed_file
from bench.load import load_tool, poll
from bench.procs import LOOPBACK, free_port, tree_cpu_seconds, upstream
from bench.service import SyncResult, service
from scripts.throwaway_postgres import PostgresCluster, running_cluster
from service.catalog.sql import COPIED_PRODUCT_COLUMNS
from service.settings import Settings

CEILING_BATCH: int = Settings.model_fields["batch_size"].default  # as our batches commit


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


@dataclass(frozen=True)
class FreshRound:
    """One round: our fresh sync into a new database, then the ceiling copying the rows it stored."""

    ours: SyncResult
    server_cpu_s: float
    ceiling: CopyTimes
    count: int

    @property
    def ratio(self) -> float:
        return self.ours.per_second / (self.count / self.ceiling.seconds)


@dataclass(frozen=True)
class LoadRound:
    p99_ms: float
    still_running: bool


def _fresh_round(
    cluster: PostgresCluster, name: str, feed_url: str, logs: Path, run_dir: Path, count: int
) -> tuple[FreshRound, str]:
    create_database(cluster.url("postgres"), name)
    url = cluster.url(name)
    postmaster = cluster.postmaster_pid
    server_before = tree_cpu_seconds(postmaster)
    with service(run_dir / "unused.db", feed_url, logs / f"{name}.log", database_url=url) as svc:
        fresh = svc.sync()
    server_cpu = tree_cpu_seconds(postmaster) - server_before
    rows = asyncio.run(_rows(url))
    ceiling = _timed_ceiling(url, rows, CEILING_BATCH, postmaster, foreign_keys=True)
    return FreshRound(fresh, server_cpu, ceiling, count), url


def _load_round(
    cluster: PostgresCluster,
    name: str,
    feed_url: str,
    logs: Path,
    run_dir: Path,
    connections: int,
    seconds: float,
) -> LoadRound:
    create_database(cluster.url("postgres"), name)
    with service(
        run_dir / "unused.db", feed_url, logs / f"{name}.log", database_url=cluster.url(name)
    ) as svc:
        run_id = svc.client.trigger()
        while not (svc.client.status()["progress"] or {}).get("processed"):
            time.sleep(0.02)
        status_url = f"http://{LOOPBACK}:{svc.port}/admin/sync/status"
        busy = poll(status_url, f"Bearer {svc.token}", connections, seconds)
        still_running = bool(svc.client.status()["isRunning"])
        svc.client.wait_finished(run_id, 1800)
    return LoadRound(busy.p99_ms, still_running)


@dataclass(frozen=True)
class PostgresFigures:
    count: int
    fresh_rounds: list[FreshRound]
    same: SyncResult
    same_server_cpu_s: float
    rewritten: int  # rows the identical re-sync wrote
    ceiling_no_keys: CopyTimes
    ceiling_one_statement: CopyTimes
    load_rounds: list[LoadRound]

    @property
    def ratio(self) -> float:
        """The fresh sync against its ceiling: the rounds' median."""
        return statistics.median(measured.ratio for measured in self.fresh_rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(loaded.p99_ms for loaded in self.load_rounds)

    def goals(self) -> list[tuple[str, bool, str]]:
        """(goal, met, figures) for each of the PostgreSQL goals."""
        ratios = ", ".join(f"{measured.ratio:.2f}x" for measured in self.fresh_rounds)
        running = all(loaded.still_running for loaded in self.load_rounds)
        p99s = ", ".join(f"{loaded.p99_ms:.2f}" for loaded in self.load_rounds)
        return [
            (
                "PostgreSQL fresh sync >= 0.5x the COPY ceiling (median of the rounds)",
                self.ratio >= 0.5,
                f"{self.ratio:.2f}x of {ratios}",
            ),
            (
                "PostgreSQL identical re-sync writes no row",
                self.rewritten == 0,
                f"{self.rewritten} rows rewritten, {self.same.stats['unchanged']:,} unchanged",
            ),
            (
                "PostgreSQL status p99 < 25 ms during a sync (median of the rounds)",
                self.p99_ms < 25 and running,
                f"{self.p99_ms:.2f} ms of {p99s}" + ("" if running else "; a sync ended before its poll did"),
            ),
        ]


def measure(
    count: int, work_dir: Path, rounds: int, connections: int, seconds: float, log: Callable[[str], None]
) -> PostgresFigures:
    """Every PostgreSQL measurement, on a throwaway cluster started (and deleted) here."""
    log(f"PostgreSQL: preparing a feed of {count:,} products (cached in {work_dir})")
    feed = feed_file(work_dir, count, 0)
    run_dir = Path(tempfile.mkdtemp(prefix="product-sync-pg-run-"))
    log("PostgreSQL: starting a throwaway cluster")
    fresh_rounds: list[FreshRound] = []
    load_rounds: list[LoadRound] = []
    try:
        with running_cluster(free_port()) as cluster:
            # The server's processes are the postmaster's children: their CPU is the database's share.
            postmaster = cluster.postmaster_pid
            port = free_port()
            feed_url = f"http://{LOOPBACK}:{port}/products.ndjson"
            logs = run_dir / "logs"
            with upstream(feed, port, logs / "upstream.log"):
                for index in range(rounds):
                    # This machine's speed drifts by a fifth within minutes: each round pairs our sync
                    # with the ceiling right after it, and the goal is judged on the rounds' median.
                    log(f"round {index + 1}: our fresh sync, then the ceiling (COPY of the same rows)")
                    measured, url = _fresh_round(cluster, f"sync{index}", feed_url, logs, run_dir, count)
                    fresh_rounds.append(measured)
                log("our sync into PostgreSQL: identical re-sync")
                server_before = tree_cpu_seconds(postmaster)
                with service(run_dir / "unused.db", feed_url, logs / "same.log", database_url=url) as svc:
                    same = svc.sync()
                same_server_cpu = tree_cpu_seconds(postmaster) - server_before
                rewritten = asyncio.run(_rewritten(url, same.run_id))
                log("for reference: COPY without the foreign keys, and in one statement")
                rows = asyncio.run(_rows(url))
                no_keys = _timed_ceiling(url, rows, CEILING_BATCH, postmaster, foreign_keys=False)
                single = _timed_ceiling(url, rows, len(rows), postmaster, foreign_keys=False)
                del rows
                for index in range(rounds):
                    log(
                        f"round {index + 1}: status polled by {connections} connections while a"
                        f" {count:,}-product sync runs"
                    )
                    load_rounds.append(
                        _load_round(cluster, f"load{index}", feed_url, logs, run_dir, connections, seconds)
                    )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return PostgresFigures(
        count, fresh_rounds, same, same_server_cpu, rewritten, no_keys, single, load_rounds
    )


def print_figures(figures: PostgresFigures) -> None:
    count = figures.count
    print()
    print(f"PostgreSQL, {count:,} products (NDJSON over loopback; a throwaway cluster with fsync=off)")
    print(f"{'what':<48} {'seconds':>8} {'items/s':>9} {'CPU s':>7} {'server CPU s':>12}")
    for index, measured in enumerate(figures.fresh_rounds, 1):
        ours = measured.ours
        print(
            f"{f'round {index}: our sync, fresh database':<48} {ours.seconds:8.2f} {ours.per_second:9,.0f}"
            f" {ours.cpu_seconds:7.2f} {measured.server_cpu_s:12.2f}"
        )
        times = measured.ceiling
        print(
            f"{f'round {index}: COPY, batches of {CEILING_BATCH:,} (the ceiling)':<48} {times.seconds:8.2f}"
            f" {count / times.seconds:9,.0f} {times.client_cpu_s:7.2f} {times.server_cpu_s:12.2f}"
        )
    same = figures.same
    print(
        f"{'our sync, identical re-sync':<48} {same.seconds:8.2f} {same.per_second:9,.0f}"
        f" {same.cpu_seconds:7.2f} {figures.same_server_cpu_s:12.2f}"
    )
    for label, times in (
        (f"COPY, batches of {CEILING_BATCH:,}, no foreign keys", figures.ceiling_no_keys),
        ("COPY, one statement, no foreign keys", figures.ceiling_one_statement),
    ):
        cells = (
            f"{times.seconds:8.2f} {count / times.seconds:9,.0f} {times.client_cpu_s:7.2f}"
            f" {times.server_cpu_s:12.2f}"
        )
        print(f"{label:<48} {cells}")
    for index, loaded in enumerate(figures.load_rounds, 1):
        label = f"round {index}: status p99 during a sync ({load_tool()})"
        print(f"{label:<48} {loaded.p99_ms:8.2f} ms")
    last = figures.fresh_rounds[-1].ours.per_second
    no_keys_rate = count / figures.ceiling_no_keys.seconds
    print(f"(the last round's fresh sync vs COPY without the foreign keys: {last / no_keys_rate:.2f}x)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/product-sync-bench"))
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of each measurement, alternating (the goals: medians)"
    )
    args = parser.parse_args(argv)
    figures = measure(args.products, args.work_dir, args.rounds, args.connections, args.seconds, _log)
    print_figures(figures)
    print()
    for text, met, shown in figures.goals():
        print(f"{text}: {shown}: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
