"""How long retention takes to prune old runs beside a large catalog (SQLite, the real migrations).

    PYTHONPATH=. .venv/bin/python -m bench.retention                         # 20,000 products, 3,000 runs
    PYTHONPATH=. .venv/bin/python -m bench.retention --without-key-indexes   # as before migration 0011

Each pruned run makes SQLite look for the rows that refer to it (products archived by it, schedule
ticks, webhook deliveries); ``--without-key-indexes`` drops the indexes of migration 0011 first, to show
what that lookup costs without them. The statement timed is the ledger's own (``PRUNE_RUNS``).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from service.database.sqlite import SqliteDatabase
from service.ledger import queries
from service.settings import DEFAULT_MIGRATIONS_DIR

_KEY_INDEXES = (
    "products_archived_run",
    "categories_created_run",
    "schedule_ticks_run",
    "webhook_deliveries_run",
    "webhook_deliveries_target",
)
_LONG_AGO = "2020-01-01T00:00:00.000Z"
_RECENTLY = "2026-01-07T13:33:12.000Z"
_CUTOFF = "2025-01-01T00:00:00.000Z"


def _finished_run(conn: sqlite3.Connection, started_at: str) -> int:
    cursor = conn.execute(
        "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner) "
        "VALUES ('running', ?, ?, 'bench', 'bench:1:x')",
        (started_at, started_at),
    )
    run_id = cursor.lastrowid
    assert run_id is not None
    conn.execute(
        "UPDATE runs SET status = 'success', finished_at = ?, duration_s = 1.0 WHERE id = ?",
        (started_at, run_id),
    )
    return run_id


def fill_catalog(conn: sqlite3.Connection, products: int, run_id: int, at: str) -> None:
    """``products`` products in one category, all created by ``run_id`` at ``at`` (small rows, written
    by SQLite alone: what retention reads of them is their run columns)."""
    conn.execute(
        "INSERT INTO categories (handle, name, created_run, created_at) VALUES ('c', 'C', ?, ?)", (run_id, at)
    )
    conn.execute(
        """
        WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
        INSERT INTO products (external_id, handle, title, description, category_id, price_minor, currency,
                              content_hash, created_run, updated_run, created_at, updated_at)
        SELECT i, 'product-' || i, 'Product ' || i, 'A product.', (SELECT id FROM categories), 100, 'USD',
               i, ?, ?, ?, ?
        FROM n
        """,
        (products, run_id, run_id, at, at),
    )


def _prepare(db_path: Path, products: int, runs: int, without_key_indexes: bool) -> sqlite3.Connection:
    asyncio.run(_migrate(db_path))
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")  # as the service's connections have it
    if without_key_indexes:
        for name in _KEY_INDEXES:
            conn.execute(f"DROP INDEX {name}")
    conn.execute("BEGIN")
    creator = _finished_run(conn, _LONG_AGO)  # kept: its products refer to it
    fill_catalog(conn, products, creator, _LONG_AGO)
    for _ in range(runs):
        _finished_run(conn, _LONG_AGO)
    _finished_run(conn, _RECENTLY)  # the newest run, never pruned
    conn.execute("COMMIT")
    return conn


async def _migrate(db_path: Path) -> None:
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3_000, help="old runs to prune")
    parser.add_argument("--without-key-indexes", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="product-sync-retention-") as work:
        conn = _prepare(Path(work) / "sync.db", args.products, args.runs, args.without_key_indexes)
        try:
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            deleted = conn.execute(queries.PRUNE_RUNS, {"cutoff": _CUTOFF}).rowcount
            conn.execute("COMMIT")
            seconds = time.perf_counter() - started
        finally:
            conn.close()
    indexes = "without the key indexes" if args.without_key_indexes else "with the key indexes"
    print(
        f"{deleted:,} runs pruned beside {args.products:,} products, {indexes}: {seconds:.3f} s"
        f" ({seconds / max(deleted, 1) * 1000:.3f} ms a run), the write lock held throughout"
    )


if __name__ == "__main__":
    main()
