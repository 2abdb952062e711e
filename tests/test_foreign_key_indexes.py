"""Every foreign key's columns lead an index, so deleting a parent row (retention deleting old runs)
finds the rows that refer to it without scanning their tables: pruning a run costs the same whatever
the catalog's size."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from bench.retention import fill_catalog
from service.database.sqlite import SqliteDatabase
from service.ledger import queries
from service.settings import DEFAULT_MIGRATIONS_DIR
from tests.ledger_rows import days_ago, insert_finished_run


async def _migrated(db_path: Path) -> sqlite3.Connection:
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _foreign_keys(conn: sqlite3.Connection, table: str) -> list[tuple[str, ...]]:
    keys: dict[int, list[tuple[int, str]]] = {}
    for key_id, seq, _parent, column, *_ in conn.execute(f"PRAGMA foreign_key_list({table})"):
        keys.setdefault(key_id, []).append((seq, column))
    return [tuple(column for _, column in sorted(columns)) for columns in keys.values()]


def _usable_index_columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, ...]]:
    """Each index's columns, for the indexes a lookup ``column = value`` can use: full ones, and
    partial ones whose condition is only that their first column is not NULL."""
    found: list[tuple[str, ...]] = []
    for _seq, name, _unique, _origin, partial in conn.execute(f"PRAGMA index_list({table})"):
        columns = tuple(row[2] for row in conn.execute(f"PRAGMA index_info({name})"))
        if partial:
            [(sql,)] = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,))
            condition = re.search(r"\bWHERE\s+(.+?)\s*;?\s*$", sql, re.IGNORECASE | re.DOTALL)
            if condition is None or condition.group(1).lower() != f"{columns[0]} is not null".lower():
                continue
        found.append(columns)
    return found


async def test_every_foreign_key_leads_an_index(tmp_path: Path) -> None:
    conn = await _migrated(tmp_path / "sync.db")
    try:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        checked = 0
        unindexed: list[str] = []
        for table in tables:
            indexes = _usable_index_columns(conn, table)
            for key in _foreign_keys(conn, table):
                checked += 1
                if not any(columns[: len(key)] == key for columns in indexes):
                    unindexed.append(f"{table}({', '.join(key)})")
    finally:
        conn.close()
    assert checked >= 10  # the ledger's, the catalog's, the schedule's and the webhooks' keys
    assert unindexed == []


def _fill_catalog(conn: sqlite3.Connection, products: int) -> None:
    """A run that created ``products`` products (in one category), finished long ago."""
    run_id = insert_finished_run(conn, age_days=400, created=products)
    fill_catalog(conn, products, run_id, days_ago(400))


def _steps_to_prune(conn: sqlite3.Connection) -> tuple[int, int]:
    """How many runs the retention statement deleted, and SQLite's virtual machine steps for it (in
    thousands: the progress handler is called every 1,000), a measure of work that no machine's speed
    changes."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    conn.set_progress_handler(count, 1000)
    try:
        deleted = conn.execute(queries.PRUNE_RUNS, {"cutoff": days_ago(30)}).rowcount
    finally:
        conn.set_progress_handler(None, 0)
    return deleted, steps


async def test_pruning_runs_does_not_scan_the_catalog(tmp_path: Path) -> None:
    """The same 300 old runs pruned beside a catalog of 500 and of 10,000 products: the work must not
    grow with the catalog (with products.archived_run unindexed, it grew twenty-fold)."""
    work: dict[int, int] = {}
    for products in (500, 10_000):
        conn = await _migrated(tmp_path / f"catalog-{products}.db")
        try:
            _fill_catalog(conn, products)
            for _ in range(300):
                insert_finished_run(conn, age_days=100)
            insert_finished_run(conn, age_days=0)  # the newest run, which stays
            deleted, work[products] = _steps_to_prune(conn)
            assert deleted == 300
            left = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
            assert left == 2  # the run that created the products, and the newest
        finally:
            conn.close()
    assert work[10_000] <= 1.5 * work[500] + 10, work
