"""The benchmark harness: our sync against sqlite-utils and raw sqlite3, the API under load, and memory.

    python -m bench.run                      # 200,000 products; load and memory parts with 1,000,000
    python -m bench.run --products 50000 --skip-load --skip-memory

Everything runs on 127.0.0.1: the built-in upstream, the service and the baselines are separate
processes. Figures are printed; nothing is asserted (goals are reported as met or not met).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.baselines import LoadResult, catalog_rows, sqlite3_ceiling, sqlite_utils
from bench.feeds import feed_file
from bench.load import LoadFigures, bare_server_args, ensure_loopback, load_tool, poll
from bench.procs import LOOPBACK, BenchError, child, free_port, python_env, upstream
from bench.service import RunningService, SyncResult, service

DEFAULT_WORK_DIR = Path("/tmp/product-sync-bench")


@dataclass
class Report:
    """Rows of the printed tables and the goal checks, filled part by part."""

    goals: list[tuple[str, bool | None, str]] = field(default_factory=list)

    def goal(self, text: str, met: bool | None, figures: str) -> None:
        self.goals.append((text, met, figures))


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    print(f"\n{title}")
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    sys.stdout.flush()


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


def machine_line() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}; "
        f"load average at start {load}"
    )


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _feed_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}/products.ndjson"


def _rewritten(db_path: Path, run_id: int) -> int:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT count(*) FROM products WHERE updated_run = ?", (run_id,)).fetchone()
        return int(row[0])


def _sync_row(label: str, result: SyncResult) -> list[str]:
    s = result.stats
    counts = f"c={s['created']} u={s['updated']} =={s['unchanged']} e={s['errors']}"
    return [
        label,
        _num(result.processed),
        f"{result.seconds:.2f}",
        _num(result.per_second),
        f"{result.cpu_seconds:.2f}",
        _mib(result.peak_rss_mib),
        _mib(result.worker_peak_rss_mib),
        counts,
    ]


def _load_row(label: str, result: LoadResult, note: str) -> list[str]:
    return [
        label,
        _num(result.rows),
        f"{result.seconds:.2f}",
        _num(result.per_second),
        f"{result.cpu_seconds:.2f}",
        _mib(result.peak_rss_mib),
        "-",
        note,
    ]


def throughput_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    count: int = args.products
    _log(f"preparing feeds of {count:,} products (cached in {args.work_dir})")
    feed = feed_file(args.work_dir, count, 0)
    changed_feed = feed_file(args.work_dir, count, 1)
    db = run_dir / "sync.db"
    port, changed_port = free_port(), free_port()
    logs = run_dir / "logs"
    with (
        upstream(feed, count, port, logs / "upstream.log"),
        upstream(changed_feed, count, changed_port, logs / "upstream-v1.log"),
    ):
        _log("our sync: fresh database")
        with service(db, _feed_url(port), logs / "service-fresh.log") as svc:
            fresh = svc.sync()
        _log("our sync: identical re-sync")
        with service(db, _feed_url(port), logs / "service-same.log") as svc:
            same = svc.sync()
        rewritten = _rewritten(db, same.run_id)
        _log("our sync: re-sync with 10% changed")
        with service(db, _feed_url(changed_port), logs / "service-changed.log") as svc:
            changed = svc.sync()
    _log("sqlite-utils insert, then upsert of the same file")
    su_db = run_dir / "sqlite-utils.db"
    inserted = sqlite_utils("insert", su_db, feed, count)
    upserted = sqlite_utils("upsert", su_db, feed, count)
    _log("raw sqlite3 executemany upsert, batches of 1,000 (the ceiling)")
    rows = catalog_rows(db)
    ceiling = sqlite3_ceiling(run_dir / "ceiling.db", rows)
    del rows

    _table(
        f"Throughput: {count:,} products (NDJSON over loopback for our sync; the same file for sqlite-utils)",
        ["what", "items", "seconds", "items/s", "CPU s", "peak RSS MiB", "worker MiB", "counts / notes"],
        [
            _sync_row("our sync, fresh database", fresh),
            _sync_row("our sync, identical re-sync", same),
            _sync_row("our sync, 10% changed", changed),
            _load_row("sqlite-utils insert (fresh)", inserted, "--nl --pk id"),
            _load_row("sqlite-utils upsert (existing)", upserted, "--nl --pk id"),
            _load_row("sqlite3 executemany upsert", ceiling, "batches of 1,000: ceiling"),
        ],
    )
    _table(
        "Ratios (same run)",
        ["ours", "vs sqlite-utils", "vs sqlite3 ceiling"],
        [
            [
                "fresh sync",
                _ratio(fresh.per_second, inserted.per_second) + " of insert",
                _ratio(fresh.per_second, ceiling.per_second),
            ],
            [
                "identical re-sync",
                _ratio(same.per_second, upserted.per_second) + " of upsert",
                _ratio(same.per_second, ceiling.per_second),
            ],
            [
                "10% changed re-sync",
                _ratio(changed.per_second, upserted.per_second) + " of upsert",
                _ratio(changed.per_second, ceiling.per_second),
            ],
        ],
    )
    print(f"rows rewritten by the identical re-sync: {rewritten} (updated_run = run {same.run_id})")
    report.goal(
        "fresh sync >= 2x sqlite-utils insert",
        fresh.per_second >= 2 * inserted.per_second,
        _ratio(fresh.per_second, inserted.per_second),
    )
    report.goal(
        "fresh sync >= 0.5x sqlite3 ceiling (stretch)",
        fresh.per_second >= 0.5 * ceiling.per_second,
        _ratio(fresh.per_second, ceiling.per_second),
    )
    report.goal(
        "identical re-sync >= 2x sqlite-utils upsert",
        same.per_second >= 2 * upserted.per_second,
        _ratio(same.per_second, upserted.per_second),
    )
    report.goal(
        "identical re-sync rewrites no row",
        rewritten == 0 and same.stats["unchanged"] == count,
        f"{rewritten} rewritten, {same.stats['unchanged']:,} unchanged",
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _trigger_latencies(svc: RunningService, samples: int) -> list[float]:
    """Successful triggers on an idle service: trigger, cancel, wait until it has stopped; repeat."""
    latencies: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        run_id = svc.client.trigger()
        latencies.append((time.perf_counter() - started) * 1000)
        svc.client.request("POST", "/admin/sync/cancel")
        svc.client.wait_finished(run_id, 60)
    return latencies


def _busy_trigger_latencies(svc: RunningService, samples: int) -> list[float]:
    """Triggers while a sync runs: each must answer 409 (already running)."""
    latencies: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        code, _ = svc.client.request("POST", "/admin/sync/trigger")
        latencies.append((time.perf_counter() - started) * 1000)
        if code != 409:
            raise BenchError(f"trigger during a sync answered {code}, expected 409")
    return latencies


def _load_cells(label: str, figures: LoadFigures, bare: LoadFigures) -> list[str]:
    return [
        label,
        _num(figures.per_second),
        f"{figures.p50_ms:.2f}",
        f"{figures.p99_ms:.2f}",
        str(figures.errors),
        _ratio(figures.per_second, bare.per_second),
    ]


def load_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    count: int = args.load_products
    connections: int = args.connections
    seconds: float = args.seconds
    _log(f"load part: preparing a feed of {count:,} products")
    feed = feed_file(args.work_dir, count, 0)
    logs = run_dir / "logs"
    bare_port = free_port()
    bare_url = f"http://{LOOPBACK}:{bare_port}/"
    ensure_loopback(bare_url)
    _log(f"bare aiohttp handler: {connections} connections for {seconds:g} s ({load_tool()})")
    with child(bare_server_args(bare_port), bare_url, python_env(), logs / "bare.log"):
        bare = poll(bare_url, None, connections, seconds)
    port = free_port()
    with (
        upstream(feed, count, port, logs / "upstream-load.log"),
        service(run_dir / "load.db", _feed_url(port), logs / "service-load.log") as svc,
    ):
        status_url = f"http://{LOOPBACK}:{svc.port}/admin/sync/status"
        auth = f"Bearer {svc.token}"
        _log("status polled on the idle service")
        idle = poll(status_url, auth, connections, seconds)
        _log(f"status polled while a {count:,}-product sync runs")
        run_id = svc.client.trigger()
        while not (svc.client.status()["progress"] or {}).get("processed"):
            time.sleep(0.02)
        before = svc.client.status()["progress"]["processed"]
        busy = poll(status_url, auth, connections, seconds)
        after_status = svc.client.status()
        busy_triggers = (
            _busy_trigger_latencies(svc, args.trigger_samples) if after_status["isRunning"] else []
        )
        still_running = bool(after_status["isRunning"])
        after = after_status["progress"]["processed"]
        finished = svc.client.wait_finished(run_id, 1800)
        _log("trigger latency on the idle service (trigger, cancel, repeat)")
        idle_triggers = _trigger_latencies(svc, args.trigger_samples)

    _table(
        f"Load: {connections} connections, {seconds:g} s each, {load_tool()} "
        "(the load generator shares the machine's cores with the service and the upstream)",
        ["target", "requests/s", "p50 ms", "p99 ms", "errors", "vs bare"],
        [
            _load_cells("bare aiohttp handler (constant JSON)", bare, bare),
            _load_cells("GET /admin/sync/status, idle", idle, bare),
            _load_cells(f"GET /admin/sync/status, {count:,}-product sync running", busy, bare),
        ],
    )
    print(
        f"the sync processed {before:,} -> {after:,} products during the busy load; "
        f"still running when it ended: {'yes' if still_running else 'NO (figure partly idle)'}; "
        f"run {run_id} finished {finished['lastStatus']} in {finished['lastDuration']} s"
    )
    idle_p99 = _percentile(idle_triggers, 0.99)
    rows = [
        [
            "trigger on an idle service (200)",
            str(len(idle_triggers)),
            f"{_percentile(idle_triggers, 0.5):.2f}",
            f"{idle_p99:.2f}",
        ]
    ]
    if busy_triggers:
        rows.append(
            [
                "trigger during a sync (409)",
                str(len(busy_triggers)),
                f"{_percentile(busy_triggers, 0.5):.2f}",
                f"{_percentile(busy_triggers, 0.99):.2f}",
            ]
        )
    _table("Trigger latency (sequential requests, keep-alive)", ["case", "samples", "p50 ms", "p99 ms"], rows)
    worst_trigger = max([idle_p99] + ([_percentile(busy_triggers, 0.99)] if busy_triggers else []))
    report.goal(
        "status p99 < 25 ms while a sync runs",
        busy.p99_ms < 25 and still_running,
        f"p99 {busy.p99_ms:.2f} ms" + ("" if still_running else " (sync ended during the load)"),
    )
    report.goal(
        "idle status >= 0.5x bare handler requests/s",
        idle.per_second >= 0.5 * bare.per_second,
        _ratio(idle.per_second, bare.per_second),
    )
    report.goal("trigger p99 < 10 ms", worst_trigger < 10, f"worst p99 {worst_trigger:.2f} ms")


def memory_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    sizes: list[int] = [args.memory_small, args.load_products]
    results: list[tuple[int, SyncResult]] = []
    logs = run_dir / "logs"
    for count in sizes:
        _log(f"memory part: sync of {count:,} products into a fresh database")
        feed = feed_file(args.work_dir, count, 0)
        port = free_port()
        with (
            upstream(feed, count, port, logs / f"upstream-{count}.log"),
            service(run_dir / f"memory-{count}.db", _feed_url(port), logs / f"service-{count}.log") as svc,
        ):
            results.append((count, svc.sync()))
    _table(
        "Memory: peak RSS (VmHWM) of the service process during a sync into a fresh database",
        ["products", "seconds", "items/s", "service MiB", "worker MiB"],
        [
            [
                _num(count),
                f"{r.seconds:.2f}",
                _num(r.per_second),
                _mib(r.peak_rss_mib),
                _mib(r.worker_peak_rss_mib),
            ]
            for count, r in results
        ],
    )
    small, large = results[0][1], results[-1][1]
    report.goal(
        f"service peak RSS < 150 MiB at {sizes[-1]:,} products",
        large.peak_rss_mib < 150,
        f"{large.peak_rss_mib:.1f} MiB",
    )
    growth = large.peak_rss_mib - small.peak_rss_mib
    report.goal(
        f"peak RSS within 20 MiB of the {sizes[0]:,}-product figure", abs(growth) <= 20, f"{growth:+.1f} MiB"
    )


def remove_databases(run_dir: Path) -> list[Path]:
    """Delete the SQLite files a run left in its directory (WAL and owner files included); keep the logs."""

    def is_database(path: Path) -> bool:
        return path.suffix == ".db" or ".db-" in path.name or path.name.endswith(".db.owners")

    removed = [path for path in sorted(run_dir.iterdir()) if path.is_file() and is_database(path)]
    for path in removed:
        path.unlink()
    return removed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=200_000, help="feed size of the throughput part")
    parser.add_argument(
        "--load-products",
        type=int,
        default=1_000_000,
        help="feed size of the sync running during the load part, and the large memory run",
    )
    parser.add_argument("--memory-small", type=int, default=100_000, help="the small memory run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load measurement")
    parser.add_argument("--trigger-samples", type=int, default=50)
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="feed cache and per-run databases and logs"
    )
    parser.add_argument(
        "--keep-databases",
        action="store_true",
        help="keep the run's SQLite files (about 4 GB with the defaults); the logs are always kept",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = args.work_dir / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"command: python -m bench.run {shlex.join(sys.argv[1:] if argv is None else list(argv))}")
    print(f"machine: {machine_line()}")
    print(f"run directory (databases, logs): {run_dir}")
    report = Report()
    try:
        if not args.skip_throughput:
            throughput_part(args, run_dir, report)
        if not args.skip_load:
            load_part(args, run_dir, report)
        if not args.skip_memory:
            memory_part(args, run_dir, report)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_databases:
            # Runs are repeated many times while tuning: their databases filled this machine's disk.
            remove_databases(run_dir)
    _table(
        "Goals (issue 4)",
        ["goal", "met", "figure"],
        [
            [text, "-" if met is None else ("yes" if met else "NO"), figures]
            for text, met, figures in report.goals
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
