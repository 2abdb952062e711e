"""Latency of the operations endpoints on a large ledger: /metrics, /ready, /health, the runs history.

    PYTHONPATH=. .venv/bin/python -m bench.ops_endpoints --runs 100000 --errors-per-run 5

Fills a fresh ledger with finished runs and item errors (plain SQL, as the ledger writes them), starts
the real app on loopback, and prints the median and p95 of sequential requests to each endpoint, plus
the time one retention prune takes over those rows.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from service.api.keys import LEDGER
from service.app import create_app
from service.database.sqlite import SqliteDatabase
from service.settings import DEFAULT_MIGRATIONS_DIR, Settings
from service.support.timeutil import to_iso, utc_now

TOKEN = "bench-token-0123456789"
INSERT_RUN = """
INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner, created, updated, unchanged, errors,
                  processed, total)
VALUES ('running', ?, ?, 'admin', 'bench', 10, 5, 179, ?, 194, 194)
RETURNING id
"""
FINISH_RUN = "UPDATE runs SET status = ?, finished_at = ?, duration_s = 12.5, error_message = ? WHERE id = ?"


def fill_ledger(db_path: Path, runs: int, errors_per_run: int) -> None:
    """``runs`` finished runs, one a minute back from now, oldest first."""
    now = utc_now()
    with sqlite3.connect(db_path) as conn:
        for index in range(runs):
            started = to_iso(now - timedelta(minutes=runs - index))
            run_id = conn.execute(INSERT_RUN, (started, started, errors_per_run)).fetchone()[0]
            status = "error" if index % 10 == 0 else "success"
            conn.execute(
                FINISH_RUN, (status, started, "upstream down" if status == "error" else None, run_id)
            )
            conn.executemany(
                "INSERT INTO run_errors (run_id, position, external_id, reason, recorded_at) "
                "VALUES (?, ?, ?, 'bad price', ?)",
                [(run_id, i, str(i), started) for i in range(errors_per_run)],
            )


async def measure(http: aiohttp.ClientSession, url: str, requests: int) -> tuple[float, float]:
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            await response.read()
            assert response.status == 200, (url, response.status)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


async def bench(runs: int, errors_per_run: int, requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "bench.db"
        await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
        started = time.perf_counter()
        fill_ledger(db_path, runs, errors_per_run)
        elapsed = time.perf_counter() - started
        print(f"ledger: {runs} runs, {runs * errors_per_run} item errors (filled in {elapsed:.1f} s)")
        settings = Settings(
            db_path=db_path, source_url="http://127.0.0.1:9/", admin_tokens={"admin": SecretStr(TOKEN)}
        )
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                paths = ["/health", "/ready", "/metrics", "/admin/sync/status", "/admin/sync/runs?limit=50"]
                paths += [f"/admin/sync/runs/{runs // 2}?errorsLimit=50", "/admin/sync/runs?status=error"]
                for path in paths:
                    median, p95 = await measure(http, base + path, requests)
                    print(
                        f"GET {path:<40} median {median:7.2f} ms   p95 {p95:7.2f} ms   ({requests} requests)"
                    )
            # Retention over the whole ledger: every error older than a day, every run older than 30 days.
            started = time.perf_counter()
            errors_deleted, runs_deleted = await app[LEDGER].prune(1, 30)
            elapsed = time.perf_counter() - started
            print(f"prune: {errors_deleted} item errors and {runs_deleted} runs deleted in {elapsed:.2f} s")
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--errors-per-run", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(bench(args.runs, args.errors_per_run, args.requests))


if __name__ == "__main__":
    main()
