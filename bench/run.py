"""The benchmark harness: our sync against sqlite-utils and raw sqlite3, the API under load, memory,
the push into Medusa and the sync into PostgreSQL (bench.postgres).

    python -m bench.run                      # 200,000 products; load and memory parts with 1,000,000
    python -m bench.run --products 50000 --skip-load --skip-memory
    python -m bench.run --skip-throughput --skip-load --skip-memory   # the paged format only
    python -m bench.run --skip-throughput --skip-paged --skip-load --skip-memory --skip-medusa  # PostgreSQL

Everything runs on 127.0.0.1: the built-in upstream, the service and the baselines are separate
processes. Figures are printed; nothing is asserted (goals are reported as met or not met). The fresh
syncs are measured in rounds (``--rounds``, 3), each right beside its own sqlite-utils and ceiling runs,
and their goals judged on the rounds' median ratio: this machine's speed drifts by a fifth within minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import postgres
from bench.baselines import CEILING_BATCH, LoadResult, catalog_rows, sqlite3_ceiling, sqlite_utils
from bench.feeds import feed_file
from bench.load import LoadFigures, bare_server_args, ensure_loopback, load_tool, poll
from bench.medusa import DEFAULT_CONCURRENCY, measure, start_shop
from bench.percentiles import percentile
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


FORMATS = ("ndjson", "dummyjson")
# The goal for a trigger's p99, idle or during a sync (409).
TRIGGER_GOAL_MS = 10.0


def _feed_url(port: int, source_format: str = "ndjson") -> str:
    path = "/products.ndjson" if source_format == "ndjson" else "/products"
    return f"http://{LOOPBACK}:{port}{path}"


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


@dataclass(frozen=True)
class _ThroughputRound:
    fresh: SyncResult
    same: SyncResult
    rewritten: int
    inserted: LoadResult
    upserted: LoadResult
    ceiling: LoadResult


def _throughput_round(
    run_dir: Path, number: int, feed: Path, port: int, count: int, keep_databases: bool
) -> _ThroughputRound:
    """Our fresh sync and identical re-sync, then sqlite-utils and the ceiling on the same products, one
    right after the other, so that each ratio compares figures of the same minutes."""
    db = run_dir / f"sync-{number}.db"
    logs = run_dir / "logs"
    _log(f"round {number}: our sync, fresh database")
    with service(db, _feed_url(port), logs / f"service-fresh-{number}.log") as svc:
        fresh = svc.sync()
    _log(f"round {number}: our sync, identical re-sync")
    with service(db, _feed_url(port), logs / f"service-same-{number}.log") as svc:
        same = svc.sync()
    rewritten = _rewritten(db, same.run_id)
    _log(f"round {number}: sqlite-utils insert, then upsert of the same file")
    su_db = run_dir / f"sqlite-utils-{number}.db"
    inserted = sqlite_utils("insert", su_db, feed, count)
    upserted = sqlite_utils("upsert", su_db, feed, count)
    _log(f"round {number}: raw sqlite3 executemany upsert, batches of {CEILING_BATCH:,} (the ceiling)")
    rows = catalog_rows(db)
    ceiling = sqlite3_ceiling(run_dir / f"ceiling-{number}.db", rows)
    del rows
    if not keep_databases:  # a round's databases take about a gigabyte
        remove_databases(run_dir, keep={db.name})
    return _ThroughputRound(fresh, same, rewritten, inserted, upserted, ceiling)


def throughput_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    count: int = args.products
    rounds: int = args.rounds
    _log(f"preparing feeds of {count:,} products (cached in {args.work_dir})")
    feed = feed_file(args.work_dir, count, 0)
    changed_feed = feed_file(args.work_dir, count, 1)
    port, changed_port = free_port(), free_port()
    logs = run_dir / "logs"
    measured: list[_ThroughputRound] = []
    with (
        upstream(feed, port, logs / "upstream.log"),
        upstream(changed_feed, changed_port, logs / "upstream-v1.log"),
    ):
        for number in range(1, rounds + 1):
            measured.append(_throughput_round(run_dir, number, feed, port, count, args.keep_databases))
        _log("our sync: re-sync with 10% changed (of the last round's catalog)")
        with service(
            run_dir / f"sync-{rounds}.db", _feed_url(changed_port), logs / "service-changed.log"
        ) as svc:
            changed = svc.sync()
    last = measured[-1]

    table_rows: list[list[str]] = []
    ceiling_note = f"batches of {CEILING_BATCH:,}: ceiling"
    for number, round_ in enumerate(measured, 1):
        table_rows += [
            _sync_row(f"{number}: our sync, fresh database", round_.fresh),
            _sync_row(f"{number}: our sync, identical re-sync", round_.same),
            _load_row(f"{number}: sqlite-utils insert (fresh)", round_.inserted, "--nl --pk id"),
            _load_row(f"{number}: sqlite-utils upsert (existing)", round_.upserted, "--nl --pk id"),
            _load_row(f"{number}: sqlite3 executemany upsert", round_.ceiling, ceiling_note),
        ]
    table_rows.append(_sync_row("our sync, 10% changed", changed))
    _table(
        f"Throughput: {count:,} products (NDJSON over loopback for our sync; the same file for sqlite-utils),"
        f" {rounds} rounds",
        ["what", "items", "seconds", "items/s", "CPU s", "peak RSS MiB", "worker MiB", "counts / notes"],
        table_rows,
    )

    def ratios(
        ours: Callable[[_ThroughputRound], float], base: Callable[[_ThroughputRound], float]
    ) -> list[float]:
        return [ours(round_) / base(round_) if base(round_) else 0.0 for round_ in measured]

    fresh_insert = ratios(lambda r: r.fresh.per_second, lambda r: r.inserted.per_second)
    fresh_ceiling = ratios(lambda r: r.fresh.per_second, lambda r: r.ceiling.per_second)
    same_upsert = ratios(lambda r: r.same.per_second, lambda r: r.upserted.per_second)
    same_ceiling = ratios(lambda r: r.same.per_second, lambda r: r.ceiling.per_second)
    compared = [
        ("fresh sync", "sqlite-utils insert", fresh_insert),
        ("fresh sync", "sqlite3 ceiling", fresh_ceiling),
        ("identical re-sync", "sqlite-utils upsert", same_upsert),
        ("identical re-sync", "sqlite3 ceiling", same_ceiling),
    ]
    _table(
        "Ratios (each round's figures against the same round's; the goals are judged on the medians)",
        ["ours", "vs", "rounds", "median"],
        [
            *(
                [ours, base, _rounds(values), _times(statistics.median(values))]
                for ours, base, values in compared
            ),
            [
                "10% changed re-sync (last round)",
                "sqlite-utils upsert",
                "-",
                _ratio(changed.per_second, last.upserted.per_second),
            ],
        ],
    )
    rewritten = [round_.rewritten for round_ in measured]
    print(f"rows rewritten by the identical re-syncs: {', '.join(map(str, rewritten))}")
    _median_goal(report, "NDJSON fresh sync >= 2.5x sqlite-utils insert", fresh_insert, 2.5)
    _median_goal(report, "NDJSON fresh sync >= 0.8x sqlite3 ceiling", fresh_ceiling, 0.8)
    _median_goal(report, "NDJSON identical re-sync >= 4x sqlite-utils upsert", same_upsert, 4)
    report.goal(
        "identical re-sync rewrites no row (every round)",
        all(r.rewritten == 0 and r.same.stats["unchanged"] == count for r in measured),
        f"{sum(rewritten)} rewritten, {min(r.same.stats['unchanged'] for r in measured):,} unchanged",
    )


def _median_goal(report: Report, text: str, ratios: Sequence[float], at_least: float) -> None:
    """A goal on the rounds' median ratio, shown with every round's."""
    median = statistics.median(ratios)
    report.goal(f"{text} (median)", median >= at_least, f"{_times(median)} ({_rounds(ratios)})")


def _times(value: float) -> str:
    return f"{value:.2f}x"


def _rounds(values: Sequence[float]) -> str:
    return ", ".join(_times(value) for value in values)


@contextlib.contextmanager
def _service_on_feed(
    run_dir: Path, feed: Path, source_format: str, name: str, page_delay_ms: float = 0.0, **settings: str
) -> Iterator[RunningService]:
    """The demo upstream serving ``feed``, and a service syncing it in ``source_format`` into the
    database ``<name>.db`` of the run directory (logs named after it)."""
    port = free_port()
    logs = run_dir / "logs"
    with (
        upstream(feed, port, logs / f"upstream-{name}.log", page_delay_ms=page_delay_ms),
        service(
            run_dir / f"{name}.db",
            _feed_url(port, source_format),
            logs / f"service-{name}.log",
            source_format=source_format,
            **settings,
        ) as svc,
    ):
        yield svc


def _paged_sync(
    args: argparse.Namespace, run_dir: Path, count: int, latency_ms: float, window: int, number: int = 1
) -> SyncResult:
    """A fresh sync of ``count`` products from DummyJSON pages that each take ``latency_ms``."""
    feed = feed_file(args.work_dir, count, 0)
    name = f"paged-{count}-{latency_ms:g}ms-w{window}-{number}"
    with _service_on_feed(
        run_dir, feed, "dummyjson", name, page_delay_ms=latency_ms, page_window=str(window)
    ) as svc:
        return svc.sync()


def paged_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    """The DummyJSON pager (the replaced job's format): at loopback speed, and with a round trip per
    page as across a network, one page at a time beside the page window."""
    window: int = args.page_window
    page_size = 100  # the service's default SYNC_PAGE_SIZE
    count: int = args.products
    rows: list[list[str]] = []
    windowed_ratios: list[float] = []
    feed = feed_file(args.work_dir, count, 0)
    for number in range(1, args.rounds + 1):
        # Each round's syncs against the same round's sqlite-utils insert, as in the throughput part.
        _log(f"round {number}: paged format, {count:,} products at 0 ms a page, window 1 and {window}")
        fast = {w: _paged_sync(args, run_dir, count, 0, w, number) for w in (1, window)}
        _log(f"round {number}: sqlite-utils insert of {count:,} products")
        inserted = sqlite_utils("insert", run_dir / f"sqlite-utils-paged-{number}.db", feed, count)
        if not args.keep_databases:
            remove_databases(run_dir)
        rows += [
            [
                *_sync_row(f"{number}: paged, 0 ms, window {w}", result),
                _ratio(result.per_second, inserted.per_second),
            ]
            for w, result in fast.items()
        ]
        rows.append([*_load_row(f"{number}: sqlite-utils insert (fresh)", inserted, "NDJSON file"), "1.00x"])
        windowed_ratios.append(fast[window].per_second / inserted.per_second if inserted.per_second else 0.0)
    _table(
        f"Paged format (DummyJSON, {page_size} a page) at loopback speed: {count:,} products, fresh database,"
        f" {args.rounds} rounds",
        ["what", "items", "seconds", "items/s", "CPU s", "peak RSS MiB", "worker MiB", "counts", "vs insert"],
        rows,
    )
    _median_goal(
        report, f"paged fresh sync at 0 ms >= 2x sqlite-utils insert ({count:,})", windowed_ratios, 2
    )

    slow_count: int = args.latency_products
    latency_rows: list[list[str]] = []
    for latency_ms in args.latencies_ms:
        if not latency_ms:
            continue
        _log(f"paged format: {slow_count:,} products at {latency_ms:g} ms a page, window 1 and {window}")
        sequential = _paged_sync(args, run_dir, slow_count, latency_ms, 1)
        windowed = _paged_sync(args, run_dir, slow_count, latency_ms, window)
        for w, result in ((1, sequential), (window, windowed)):
            limit = w * page_size / (latency_ms / 1000)
            latency_rows.append(
                [
                    f"{latency_ms:g} ms a page, window {w}",
                    f"{result.seconds:.2f}",
                    _num(result.per_second),
                    _num(limit),
                    _ratio(result.per_second, limit),
                    _ratio(result.per_second, sequential.per_second),
                ]
            )
        if latency_ms == max(args.latencies_ms):
            limit = window * page_size / (latency_ms / 1000)
            report.goal(
                f"paged at {latency_ms:g} ms >= 0.8x the latency limit (window {window})",
                windowed.per_second >= 0.8 * limit,
                _ratio(windowed.per_second, limit),
            )
            report.goal(
                f"paged at {latency_ms:g} ms, window {window} >= 4x window 1",
                windowed.per_second >= 4 * sequential.per_second,
                _ratio(windowed.per_second, sequential.per_second),
            )
    if latency_rows:
        _table(
            f"Paged format across a network: {slow_count:,} products, {page_size} a page, fresh database "
            "(latency limit = window x page size / latency)",
            ["case", "seconds", "items/s", "latency limit", "vs limit", "vs window 1"],
            latency_rows,
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


@dataclass(frozen=True)
class _BusyFigures:
    idle: LoadFigures
    busy: LoadFigures
    idle_triggers: list[float]
    busy_triggers: list[float]
    still_running: bool
    note: str


def _load_on_format(
    args: argparse.Namespace, run_dir: Path, source_format: str, feed: Path, count: int
) -> _BusyFigures:
    connections: int = args.connections
    seconds: float = args.seconds
    with _service_on_feed(run_dir, feed, source_format, f"load-{source_format}") as svc:
        status_url = f"http://{LOOPBACK}:{svc.port}/admin/sync/status"
        auth = f"Bearer {svc.token}"
        _log(f"{source_format}: status polled on the idle service")
        idle = poll(status_url, auth, connections, seconds)
        _log(f"{source_format}: status polled while a {count:,}-product sync runs")
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
        _log(f"{source_format}: trigger latency on the idle service (trigger, cancel, repeat)")
        idle_triggers = _trigger_latencies(svc, args.trigger_samples)
    note = (
        f"{source_format}: the sync processed {before:,} -> {after:,} products during the busy load; "
        f"still running when it ended: {'yes' if still_running else 'NO (figure partly idle)'}; "
        f"run {run_id} finished {finished['lastStatus']} in {finished['lastDuration']} s"
    )
    return _BusyFigures(idle, busy, idle_triggers, busy_triggers, still_running, note)


def load_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    count: int = args.load_products
    connections: int = args.connections
    seconds: float = args.seconds
    _log(f"load part: preparing a feed of {count:,} products")
    if load_tool() != "wrk":
        # The aiohttp generator takes about a core itself, on the cores the service runs on: its p99
        # figures say more about it than about the service.
        _log("wrk is not installed (apt-get install -y wrk): the load part uses the aiohttp generator,")
        _log("which competes with the service for the CPU; its latency figures are not comparable")
    feed = feed_file(args.work_dir, count, 0)
    logs = run_dir / "logs"
    bare_port = free_port()
    bare_url = f"http://{LOOPBACK}:{bare_port}/"
    ensure_loopback(bare_url)
    _log(f"bare aiohttp handler: {connections} connections for {seconds:g} s ({load_tool()})")
    with child(bare_server_args(bare_port), bare_url, python_env(), logs / "bare.log"):
        bare = poll(bare_url, None, connections, seconds)
    by_format = {fmt: _load_on_format(args, run_dir, fmt, feed, count) for fmt in args.formats}

    rows = [_load_cells("bare aiohttp handler (constant JSON)", bare, bare)]
    for fmt, figures in by_format.items():
        rows.append(_load_cells(f"GET /admin/sync/status, idle ({fmt})", figures.idle, bare))
        rows.append(_load_cells(f"GET /admin/sync/status, {count:,}-product {fmt} sync", figures.busy, bare))
    _table(
        f"Load: {connections} connections, {seconds:g} s each, {load_tool()} "
        "(the load generator shares the machine's cores with the service and the upstream)",
        ["target", "requests/s", "p50 ms", "p99 ms", "errors", "vs bare"],
        rows,
    )
    for figures in by_format.values():
        print(figures.note)
    trigger_rows: list[list[str]] = []
    worst_trigger = 0.0
    for fmt, figures in by_format.items():
        for case, latencies in (
            (f"trigger on an idle service (200), {fmt}", figures.idle_triggers),
            (f"trigger during a {fmt} sync (409)", figures.busy_triggers),
        ):
            if not latencies:
                continue
            p99 = percentile(latencies, 0.99)
            worst_trigger = max(worst_trigger, p99)
            trigger_rows.append(
                [
                    case,
                    str(len(latencies)),
                    f"{percentile(latencies, 0.5):.2f}",
                    f"{p99:.2f}",
                    f"{max(latencies):.2f}",
                    str(sum(latency >= TRIGGER_GOAL_MS for latency in latencies)),
                ]
            )
    _table(
        "Trigger latency (sequential requests, keep-alive)",
        ["case", "samples", "p50 ms", "p99 ms", "slowest ms", f"at {TRIGGER_GOAL_MS:g} ms or more"],
        trigger_rows,
    )
    for fmt, figures in by_format.items():
        report.goal(
            f"status p99 < 25 ms while a {fmt} sync runs",
            figures.busy.p99_ms < 25 and figures.still_running,
            f"p99 {figures.busy.p99_ms:.2f} ms"
            + ("" if figures.still_running else " (sync ended during the load)"),
        )
        report.goal(
            f"idle status >= 0.5x bare handler requests/s ({fmt})",
            figures.idle.per_second >= 0.5 * bare.per_second,
            _ratio(figures.idle.per_second, bare.per_second),
        )
    report.goal(
        f"trigger p99 < {TRIGGER_GOAL_MS:g} ms",
        worst_trigger < TRIGGER_GOAL_MS,
        f"worst p99 {worst_trigger:.2f} ms",
    )


def memory_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    sizes: list[int] = [args.memory_small, args.load_products]
    results: list[tuple[str, int, SyncResult]] = []
    for fmt in args.formats:
        for count in sizes:
            _log(f"memory part: {fmt} sync of {count:,} products into a fresh database")
            feed = feed_file(args.work_dir, count, 0)
            with _service_on_feed(run_dir, feed, fmt, f"memory-{fmt}-{count}") as svc:
                results.append((fmt, count, svc.sync()))
    _table(
        "Memory: peak RSS (VmHWM) of the service process during a sync into a fresh database",
        ["format", "products", "seconds", "items/s", "service MiB", "worker MiB"],
        [
            [
                fmt,
                _num(count),
                f"{r.seconds:.2f}",
                _num(r.per_second),
                _mib(r.peak_rss_mib),
                _mib(r.worker_peak_rss_mib),
            ]
            for fmt, count, r in results
        ],
    )
    for fmt in args.formats:
        small, large = [r for f, _, r in results if f == fmt]
        report.goal(
            f"service peak RSS < 150 MiB at {sizes[-1]:,} products ({fmt})",
            large.peak_rss_mib < 150,
            f"{large.peak_rss_mib:.1f} MiB",
        )
        growth = large.peak_rss_mib - small.peak_rss_mib
        report.goal(
            f"peak RSS within 20 MiB of the {sizes[0]:,}-product figure ({fmt})",
            abs(growth) <= 20,
            f"{growth:+.1f} MiB",
        )


def medusa_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    count: int = args.medusa_products
    concurrencies = sorted({*args.medusa_concurrency, DEFAULT_CONCURRENCY})
    _log("Medusa: starting the throwaway shop (PostgreSQL and the pinned Medusa app)")
    server = start_shop(run_dir / "medusa")
    try:
        figures = measure(server, args.work_dir, run_dir, count, concurrencies, _log)
    finally:
        server.stop()
    ceiling = figures.ceiling_create
    rows = [
        [
            result.label,
            _num(result.products),
            f"{result.seconds:.2f}",
            _num(result.per_second),
            str(result.write_requests),
            _ratio(result.per_second, ceiling.per_second),
        ]
        for result in [*figures.fresh.values(), ceiling]
    ]
    update_ceiling = figures.ceiling_update
    for result in (figures.same, figures.changed, update_ceiling):
        rows.append(
            [
                result.label,
                _num(result.products),
                f"{result.seconds:.2f}",
                _num(result.per_second),
                str(result.write_requests),
                "-" if result is figures.same else _ratio(result.per_second, update_ceiling.per_second),
            ]
        )
    _table(
        f"Medusa: {count:,} products into a local Medusa v2 (our runs: the ledger's durations; "
        f"the ceiling: requests of {1000:,}, one at a time, no lookups)",
        ["what", "products sent", "seconds", "products/s", "write requests", "vs ceiling"],
        rows,
    )
    print(
        f"identical re-sync: {figures.same.stats['processed']:,} products compared at "
        f"{figures.same_read_per_second:,.0f}/s; 10% changed: {figures.changed.stats['updated']:,} updated, "
        f"{figures.changed.stats['created']} created, of {figures.changed_expected:,} changed upstream"
    )
    ours = figures.fresh[DEFAULT_CONCURRENCY]
    report.goal(
        f"Medusa fresh push >= 0.8x the direct-batch ceiling ({DEFAULT_CONCURRENCY} in flight)",
        ours.per_second >= 0.8 * ceiling.per_second,
        _ratio(ours.per_second, ceiling.per_second),
    )
    report.goal(
        "Medusa identical re-sync: 0 write requests, >= 20,000 products/s",
        figures.same.write_requests == 0 and figures.same_read_per_second >= 20_000,
        f"{figures.same.write_requests} writes, {figures.same_read_per_second:,.0f}/s",
    )
    changed = figures.changed
    report.goal(
        "Medusa 10% changed: exactly those updates, >= 0.8x the ceiling's update rate",
        changed.stats["updated"] == figures.changed_expected
        and changed.stats["created"] == 0
        and changed.per_second >= 0.8 * update_ceiling.per_second,
        f"{changed.stats['updated']} of {figures.changed_expected}, "
        + _ratio(changed.per_second, update_ceiling.per_second),
    )


def postgres_part(args: argparse.Namespace, run_dir: Path, report: Report) -> None:
    figures = postgres.measure(
        args.products, args.work_dir, args.postgres_rounds, args.connections, args.seconds, _log
    )
    postgres.print_figures(figures)
    for text, met, shown in figures.goals():
        report.goal(text, met, shown)


def remove_databases(run_dir: Path, keep: Collection[str] = ()) -> list[Path]:
    """Delete the SQLite files a run left in its directory (WAL and owner files included); keep the logs,
    and the databases named in ``keep`` (with their WAL files)."""

    def is_database(path: Path) -> bool:
        if any(path.name == name or path.name.startswith(f"{name}-") for name in keep):
            return False
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
        "--rounds",
        type=int,
        default=3,
        help="rounds of the fresh syncs (throughput, paged), each with its own baselines (goals: medians)",
    )
    parser.add_argument(
        "--load-products",
        type=int,
        default=1_000_000,
        help="feed size of the sync running during the load part, and the large memory run",
    )
    parser.add_argument("--memory-small", type=int, default=100_000, help="the small memory run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load measurement")
    # 200: of 50, the p99 was the single slowest trigger, a figure that one stray scheduling delay decides.
    parser.add_argument("--trigger-samples", type=int, default=200)
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="feed cache and per-run databases and logs"
    )
    parser.add_argument(
        "--keep-databases",
        action="store_true",
        help="keep the run's SQLite files (about 4 GB with the defaults); the logs are always kept",
    )
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        default=list(FORMATS),
        help="the feed formats of the load and memory parts",
    )
    parser.add_argument("--page-window", type=int, default=5, help="SYNC_PAGE_WINDOW of the paged part")
    parser.add_argument(
        "--latencies-ms",
        type=float,
        nargs="+",
        default=[20.0, 100.0],
        help="per-page delays of the paged part's network rows (the largest is the goal's)",
    )
    parser.add_argument(
        "--latency-products", type=int, default=20_000, help="feed size of the paged part's network rows"
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-paged", action="store_true")
    parser.add_argument(
        "--skip-medusa",
        action="store_true",
        help="the Medusa part needs Node 20+ and PostgreSQL (see README)",
    )
    parser.add_argument("--medusa-products", type=int, default=5_000)
    parser.add_argument(
        "--medusa-concurrency",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="requests in flight to compare (the default setting's is always measured)",
    )
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--skip-postgres", action="store_true", help="the PostgreSQL part needs its binaries (see README)"
    )
    parser.add_argument(
        "--postgres-rounds", type=int, default=3, help="rounds of the PostgreSQL part (its goals: medians)"
    )
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
        if not args.skip_paged:
            paged_part(args, run_dir, report)
        if not args.skip_load:
            load_part(args, run_dir, report)
        if not args.skip_memory:
            memory_part(args, run_dir, report)
        if not args.skip_medusa:
            medusa_part(args, run_dir, report)
        if not args.skip_postgres:
            postgres_part(args, run_dir, report)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_databases:
            # Runs are repeated many times while tuning: their databases filled this machine's disk.
            remove_databases(run_dir)
    _table(
        "Goals",
        ["goal", "met", "figure"],
        [
            [text, "-" if met is None else ("yes" if met else "NO"), figures]
            for text, met, figures in report.goals
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
