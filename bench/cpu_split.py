"""Where a fresh sync's CPU goes, and how much two busy vCPUs slow each other down.

    PYTHONPATH=. .venv/bin/python -m bench.cpu_split                  # SQLite and PostgreSQL
    PYTHONPATH=. .venv/bin/python -m bench.cpu_split --backend sqlite

For each backend, a fresh sync of the same NDJSON feed by the real service process, with the CPU of
each party (the service's own threads, its mapping workers, the PostgreSQL server, the upstream) and
how many cores were busy on average. Then the mapping of the feed's first items in this process, alone
and beside a busy loop on the other core: on a machine whose cores share their hardware, work that runs
side by side is slower per item than work that runs alone, which bounds what parallelism can give.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.feeds import feed_file
from bench.postgres import create_database
from bench.procs import LOOPBACK, cpu_seconds, free_port, own_cpu_seconds, tree_cpu_seconds, upstream
from bench.service import service
from scripts.throwaway_postgres import running_cluster
from service.transport.packing import map_items_packed

_MAPPED_ITEMS = 20_000
_MAPPED_CHUNK = 1_000
_BUSY_LOOP = "while True: pass"


@dataclass(frozen=True)
class CpuSplit:
    backend: str
    seconds: float
    per_second: float
    service_s: float  # the service process's own threads (event loop, SQLite thread, ...)
    workers_s: float  # its mapping worker processes
    server_s: float  # the PostgreSQL server's processes (0 on SQLite)
    upstream_s: float

    @property
    def cores_busy(self) -> float:
        return (self.service_s + self.workers_s + self.server_s + self.upstream_s) / self.seconds


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _postgres(enabled: bool) -> Iterator[tuple[str | None, int | None]]:
    """A throwaway cluster's database URL and postmaster pid, or (None, None) without PostgreSQL."""
    if not enabled:
        yield None, None
        return
    with running_cluster(free_port()) as cluster:
        create_database(cluster.url("postgres"), "sync")
        yield cluster.url("sync"), cluster.postmaster_pid


def _fresh_sync(backend: str, feed: Path, run_dir: Path, number: int) -> CpuSplit:
    port = free_port()
    feed_url = f"http://{LOOPBACK}:{port}/products.ndjson"
    logs = run_dir / f"{backend}-{number}"
    with (
        _postgres(backend == "postgres") as (database_url, postmaster),
        upstream(feed, port, logs / "upstream.log") as source,
    ):
        settings = {"database_url": database_url} if database_url is not None else {}
        with service(run_dir / f"{backend}-{number}.db", feed_url, logs / "service.log", **settings) as svc:
            own_before, tree_before = own_cpu_seconds(svc.pid), tree_cpu_seconds(svc.pid)
            server_before = tree_cpu_seconds(postmaster) if postmaster is not None else 0.0
            upstream_before = cpu_seconds(source.pid)
            result = svc.sync()
            own = own_cpu_seconds(svc.pid) - own_before
            workers = tree_cpu_seconds(svc.pid) - tree_before - own
            server = tree_cpu_seconds(postmaster) - server_before if postmaster is not None else 0.0
            upstream_cpu = cpu_seconds(source.pid) - upstream_before
    return CpuSplit(backend, result.seconds, result.per_second, own, workers, server, upstream_cpu)


def _mapping_us_per_item(lines: Sequence[bytes]) -> float:
    chunks = [lines[start : start + _MAPPED_CHUNK] for start in range(0, len(lines), _MAPPED_CHUNK)]
    started = time.perf_counter()
    for number, chunk in enumerate(chunks):
        map_items_packed(chunk, number * _MAPPED_CHUNK, "USD", None)
    return (time.perf_counter() - started) / len(lines) * 1e6


def _interference(feed: Path, rounds: int) -> tuple[list[float], list[float]]:
    """The mapping's µs per item alone, and with a busy loop on the other core, alternately."""
    with feed.open("rb") as lines_file:
        lines = [line.rstrip(b"\n") for line in itertools.islice(lines_file, _MAPPED_ITEMS)]
    _mapping_us_per_item(lines)  # warm-up: imports, caches
    alone: list[float] = []
    beside: list[float] = []
    for _ in range(rounds):
        alone.append(_mapping_us_per_item(lines))
        busy = subprocess.Popen([sys.executable, "-c", _BUSY_LOOP])
        try:
            time.sleep(0.2)
            beside.append(_mapping_us_per_item(lines))
        finally:
            busy.kill()
            busy.wait()
    return alone, beside


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=2, help="fresh syncs per backend")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the interference measurement")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/product-sync-bench"))
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]

    _log(f"preparing a feed of {args.products:,} products (cached in {args.work_dir})")
    feed = feed_file(args.work_dir, args.products, 0)
    splits: list[CpuSplit] = []
    with tempfile.TemporaryDirectory(prefix="product-sync-cpu-") as run_dir:
        for number, backend in itertools.product(range(args.runs), backends):
            _log(f"fresh sync {number + 1} of {args.runs} into {backend}")
            splits.append(_fresh_sync(backend, feed, Path(run_dir), number))
    _log(f"mapping {_MAPPED_ITEMS:,} items in this process, alone and beside a busy loop")
    alone, beside = _interference(feed, args.rounds)

    print()
    print(f"Fresh sync of {args.products:,} products (NDJSON over loopback), CPU seconds by party")
    print(
        f"{'backend':<9} {'seconds':>8} {'items/s':>8} {'service':>8} {'workers':>8} {'server':>7}"
        f" {'upstream':>8} {'cores busy':>10}"
    )
    for split in splits:
        print(
            f"{split.backend:<9} {split.seconds:8.2f} {split.per_second:8,.0f} {split.service_s:8.2f}"
            f" {split.workers_s:8.2f} {split.server_s:7.2f} {split.upstream_s:8.2f} {split.cores_busy:10.2f}"
        )
    print()
    print(f"Mapping in one process, µs per item ({_MAPPED_ITEMS:,} items, {args.rounds} rounds)")
    print(f"  alone:                            {' '.join(f'{value:.1f}' for value in alone)}")
    print(f"  beside a busy loop on the other:  {' '.join(f'{value:.1f}' for value in beside)}")
    slower = statistics.median(beside) / statistics.median(alone)
    print(f"  median beside / alone: {slower:.2f}x (1.00x for two cores that share nothing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
