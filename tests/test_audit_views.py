"""The ledger read with plain sqlite3: the audit views, and totals that survive retention and upgrades."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from service.database.sqlite import SqliteDatabase
from service.settings import DEFAULT_MIGRATIONS_DIR
from tests.ledger_rows import insert_finished_run

TOTALS = "SELECT status, runs, created, errors, duration_s FROM run_totals ORDER BY status"


async def test_totals_are_backfilled_when_an_older_ledger_is_upgraded(tmp_path: Path) -> None:
    older = tmp_path / "migrations-0003"
    older.mkdir()
    for path in sorted(DEFAULT_MIGRATIONS_DIR.glob("000[1-3]_*.sql")):
        shutil.copy(path, older)
    db_path = tmp_path / "ledger.db"
    await (await SqliteDatabase.open(db_path, older)).close()
    with sqlite3.connect(db_path) as conn:
        insert_finished_run(conn, 3, errors=2, created=10)
        insert_finished_run(conn, 2, status="error", errors=1)
        insert_finished_run(conn, 1, created=5)

    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute(TOTALS).fetchall() == [("error", 1, 0, 1, 1.5), ("success", 2, 15, 2, 3.0)]
        insert_finished_run(conn, 0.5, status="cancelled", created=1)  # the trigger takes it from here
        insert_finished_run(conn, 0.1, created=4)
        assert conn.execute(TOTALS).fetchall() == [
            ("cancelled", 1, 1, 0, 1.5),
            ("error", 1, 0, 1, 1.5),
            ("success", 3, 19, 2, 4.5),
        ]


async def test_auditor_views_answer_who_when_how_long_and_what(tmp_path: Path) -> None:
    db_path = tmp_path / "ledger.db"
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
    with sqlite3.connect(db_path) as conn:
        first = insert_finished_run(conn, 2, errors=2, created=7)
        second = insert_finished_run(conn, 1, status="error")
        conn.row_factory = sqlite3.Row
        summary = conn.execute("SELECT * FROM run_summary").fetchall()
        assert [row["id"] for row in summary] == [second, first]
        newest = dict(summary[0])
        assert newest["status"] == "error" and newest["error_message"] == "upstream down"
        assert newest["triggered_by"] == "admin" and newest["duration_s"] == 1.5
        assert newest["started_at"].endswith("Z") and newest["finished_at"].endswith("Z")

        by_trigger = [dict(row) for row in conn.execute("SELECT * FROM runs_by_trigger")]
        assert [(r["triggered_by"], r["status"], r["runs"]) for r in by_trigger] == [
            ("admin", "error", 1),
            ("admin", "success", 1),
        ]
        errors = [dict(row) for row in conn.execute("SELECT * FROM run_error_detail")]
        assert [(e["run_id"], e["position"], e["external_id"], e["reason"]) for e in errors] == [
            (first, 0, "x0", "bad price"),
            (first, 1, "x1", "bad price"),
        ]
        assert errors[0]["run_status"] == "success" and errors[0]["triggered_by"] == "admin"
