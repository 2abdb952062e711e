"""What we compare against: ``sqlite-utils`` loading the feed by hand, and raw sqlite3 (the ceiling)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import REPO_ROOT, BenchError
from service.settings import Settings

# The ceiling commits as our sync does: a transaction per batch of the default size.
CEILING_BATCH: int = Settings.model_fields["batch_size"].default
_CATALOG_MIGRATIONS = ("0001_ledger.sql", "0002_catalog.sql")
_COLUMNS = (
    "external_id",
    "handle",
    "title",
    "description",
    "category_id",
    "price_minor",
    "currency",
    "brand",
    "sku",
    "stock",
    "thumbnail",
    "images",
    "tags",
    "metadata",
    "content_hash",
    "created_run",
    "updated_run",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class LoadResult:
    rows: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float | None  # None: measured in-process, not a process of its own

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def sqlite_utils(mode: str, db_path: Path, feed: Path, rows: int) -> LoadResult:
    """``sqlite-utils insert|upsert DB products FEED --nl --pk id``, timed, with its own peak RSS."""
    args = [
        sys.executable,
        "-m",
        "sqlite_utils",
        mode,
        str(db_path),
        "products",
        str(feed),
        "--nl",
        "--pk",
        "id",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise BenchError(f"sqlite-utils {mode} failed ({proc.returncode}): {stderr.strip()[-500:]}")
    return LoadResult(
        rows, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    )  # ru_maxrss is in KiB on Linux


def catalog_rows(db_path: Path) -> list[tuple[object, ...]]:
    """The products exactly as our sync stored them: the ceiling writes the same rows."""
    with sqlite3.connect(db_path) as conn:
        return conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM products ORDER BY id").fetchall()


def sqlite3_ceiling(db_path: Path, rows: list[tuple[object, ...]]) -> LoadResult:
    """Raw ``executemany`` upserts in batches of CEILING_BATCH, a transaction each; our schema, pragmas."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for name in _CATALOG_MIGRATIONS:
            conn.executescript((REPO_ROOT / "migrations" / name).read_text())
        updates = ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS[1:])
        sql = (
            f"INSERT INTO products ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
            f"ON CONFLICT (external_id) DO UPDATE SET {updates}"
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(rows), CEILING_BATCH):
            conn.execute("BEGIN")
            conn.executemany(sql, rows[start : start + CEILING_BATCH])
            conn.execute("COMMIT")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        conn.close()
    return LoadResult(len(rows), seconds, cpu, None)
