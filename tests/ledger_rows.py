"""Ledger rows read as an auditor would (sqlite3, or psql's equal), and rows written with plain sqlite3 as
the ledger would have written them at some time in the past."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from service.database.postgres import Compiled
from service.settings import Settings
from service.support.timeutil import to_iso, utc_now
from tests.postgres_rows import on_own_loop, pg_query


def read(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of a read of the settings' database, SQLite file or PostgreSQL, on a session of its own:
    what an auditor's ``sqlite3`` or ``psql`` would show (``?`` placeholders, either way)."""
    if settings.database_url is None:
        return query(settings.db_path, sql, params)
    rows = on_own_loop(pg_query(settings.database_url.get_secret_value(), Compiled(sql).sql, *params))
    return [tuple(row) for row in rows]


def query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of a read, on a connection of its own (closed again), as an auditor would read them."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return conn.execute(sql, params).fetchall()


def days_ago(days: float) -> str:
    return to_iso(utc_now() - timedelta(days=days))


def insert_finished_run(
    conn: sqlite3.Connection, age_days: float, status: str = "success", errors: int = 0, created: int = 0
) -> int:
    """A run as the ledger would have written it ``age_days`` ago, with ``errors`` item errors."""
    started = days_ago(age_days)
    cursor = conn.execute(
        "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner, created, errors) "
        "VALUES ('running', ?, ?, 'admin', 'gone-host.1.dead', ?, ?)",
        (started, started, created, errors),
    )
    run_id = cursor.lastrowid
    assert run_id is not None
    conn.execute(
        "UPDATE runs SET status = ?, finished_at = ?, duration_s = 1.5, error_message = ?, cancelled_by = ? "
        "WHERE id = ?",
        (
            status,
            days_ago(age_days - 0.001),
            "upstream down" if status == "error" else None,
            "admin" if status == "cancelled" else None,
            run_id,
        ),
    )
    conn.executemany(
        "INSERT INTO run_errors (run_id, position, external_id, reason, recorded_at) VALUES (?, ?, ?, ?, ?)",
        [(run_id, i, f"x{i}", "bad price", started) for i in range(errors)],
    )
    return run_id
