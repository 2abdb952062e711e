"""Checks an auditor would run with ``sqlite3``: integrity, ledger == catalog, catalog == feed.

They open the file with Python's own sqlite3 module, independently of the service's connections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any


@contextmanager
def open_db(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def integrity_check(db_path: Path) -> str:
    with open_db(db_path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def run_row(db_path: Path, run_id: int) -> dict[str, Any]:
    with open_db(db_path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert row is not None, f"run {run_id} is not in the ledger"
        return dict(row)


def assert_ledger_matches_catalog(db_path: Path, run_id: int, *, latest_writer: bool = True) -> None:
    """The run's counters are what the catalog holds from it.

    ``created`` and ``categories_created`` can always be checked exactly (those columns never change);
    ``updated`` only for the newest run that wrote a product (a later update moves ``updated_run``), so
    for older runs it is a lower bound.
    """
    run = run_row(db_path, run_id)
    with open_db(db_path) as conn:

        def count(sql: str) -> int:
            return int(conn.execute(sql, {"run": run_id}).fetchone()[0])

        created = count("SELECT count(*) FROM products WHERE created_run = :run")
        updated = count("SELECT count(*) FROM products WHERE updated_run = :run AND created_run <> :run")
        categories = count("SELECT count(*) FROM categories WHERE created_run = :run")
        errors = count("SELECT count(*) FROM run_errors WHERE run_id = :run")
    assert (run["created"], run["categories_created"], run["errors"]) == (created, categories, errors), run
    if latest_writer:
        assert run["updated"] == updated, run
    else:
        assert run["updated"] >= updated, run
    assert run["processed"] == run["created"] + run["updated"] + run["unchanged"] + run["errors"], run


def catalog(db_path: Path) -> dict[str, tuple[str, int, str]]:
    """external id -> (title, price in minor units, description), as stored."""
    with open_db(db_path) as conn:
        rows = conn.execute("SELECT external_id, title, price_minor, description FROM products").fetchall()
    return {str(ext): (str(title), int(price), str(desc)) for ext, title, price, desc in rows}


def expected_catalog(products: Sequence[dict[str, Any]]) -> dict[str, tuple[str, int, str]]:
    """What a faithful sync of ``products`` (USD, whitespace-stripped strings) stores."""
    return {
        str(p["id"]): (
            str(p["title"]).strip(),
            int(Decimal(repr(p["price"])).scaleb(2)),
            str(p.get("description", "")).strip(),
        )
        for p in products
    }


def running_rows(db_path: Path) -> int:
    with open_db(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0])
