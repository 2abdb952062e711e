"""Retention on a real SQLite file: old item errors (and optionally runs) go, the newest run never does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from service.api.keys import RUNNER
from service.app import create_app
from service.database.sqlite import SqliteDatabase
from service.settings import DEFAULT_MIGRATIONS_DIR
from tests.conftest import AUTH, AiohttpClient, make_settings
from tests.jobs import ScriptedJob
from tests.ledger_rows import days_ago, insert_finished_run

Client = TestClient[web.Request, web.Application]
SOURCE = "http://127.0.0.1:9/"


async def migrated(db_path: Path) -> None:
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()


def error_counts(db_path: Path) -> dict[int, int]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT run_id, count(*) FROM run_errors GROUP BY run_id").fetchall()
    return {int(run_id): int(count) for run_id, count in rows}


def run_ids(db_path: Path) -> list[int]:
    with sqlite3.connect(db_path) as conn:
        return [int(row[0]) for row in conn.execute("SELECT id FROM runs ORDER BY id")]


async def test_start_up_prunes_old_errors_and_runs(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    db_path = tmp_path / "sync.db"
    await migrated(db_path)
    with sqlite3.connect(db_path) as conn:
        with_catalog = insert_finished_run(conn, 60, errors=3, created=1)
        old_failure = insert_finished_run(conn, 40, status="error", errors=2)
        recent = insert_finished_run(conn, 10, errors=2)
        newest = insert_finished_run(conn, 1, errors=1)
        # Catalog rows still point at the 60-day-old run: it must stay, or they'd lose their provenance.
        conn.execute(
            "INSERT INTO categories (handle, name, created_run, created_at) VALUES ('c', 'C', ?, ?)",
            (with_catalog, days_ago(60)),
        )
    settings = make_settings(tmp_path, source_url=SOURCE, error_retention_days=7, run_retention_days=30)
    client = await aiohttp_client(create_app(settings, job=ScriptedJob()))

    assert run_ids(db_path) == [with_catalog, recent, newest]
    assert error_counts(db_path) == {newest: 1}
    response = await client.get(f"/admin/sync/runs/{old_failure}", headers=AUTH)
    assert response.status == 404
    with sqlite3.connect(db_path) as conn:
        # The pruned run is still counted in the totals the metrics read: counters never go back.
        assert conn.execute("SELECT runs, errors FROM run_totals WHERE status = 'error'").fetchone() == (1, 2)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    metrics = await (await client.get("/metrics")).text()
    assert 'product_sync_runs_total{outcome="error"} 1.0' in metrics
    assert 'product_sync_runs_total{outcome="success"} 3.0' in metrics


async def test_every_finished_run_prunes_again(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, source_url=SOURCE, error_retention_days=7)
    job = ScriptedJob(item_errors=2)
    client = await aiohttp_client(create_app(settings, job=job))
    with sqlite3.connect(settings.db_path) as conn:  # written while the service runs, as days pass
        stale = insert_finished_run(conn, 20, errors=4)
    assert error_counts(settings.db_path) == {stale: 4}

    response = await client.post("/admin/sync/trigger", headers=AUTH)
    new_run = (await response.json())["data"]["runId"]
    final = await client.app[RUNNER].wait()
    assert final.status == "success"
    assert error_counts(settings.db_path) == {new_run: 2}
    assert run_ids(settings.db_path) == [stale, new_run]  # run retention is off: runs stay


async def test_the_newest_run_is_never_pruned(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    db_path = tmp_path / "sync.db"
    await migrated(db_path)
    with sqlite3.connect(db_path) as conn:
        older = insert_finished_run(conn, 200, errors=2)
        newest = insert_finished_run(conn, 100, status="error", errors=3)
    settings = make_settings(tmp_path, source_url=SOURCE, error_retention_days=1, run_retention_days=1)
    client = await aiohttp_client(create_app(settings, job=ScriptedJob()))
    assert run_ids(db_path) == [newest]
    assert error_counts(db_path) == {newest: 3}
    status = await (await client.get("/admin/sync/status", headers=AUTH)).json()
    assert status["data"]["runId"] == newest and status["data"]["lastError"] == "upstream down"
    assert older not in run_ids(db_path)


async def test_without_retention_settings_nothing_is_pruned(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    db_path = tmp_path / "sync.db"
    await migrated(db_path)
    with sqlite3.connect(db_path) as conn:
        ids = [insert_finished_run(conn, age, errors=1) for age in (900, 400, 3)]
    await aiohttp_client(create_app(make_settings(tmp_path, source_url=SOURCE), job=ScriptedJob()))
    assert run_ids(db_path) == ids
    assert error_counts(db_path) == {run_id: 1 for run_id in ids}


async def test_schedule_ticks_go_with_old_runs_but_the_newest_tick_stays(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    db_path = tmp_path / "sync.db"
    await migrated(db_path)
    with sqlite3.connect(db_path) as conn:
        old_run = insert_finished_run(conn, 60)
        for days, run_id in ((60, old_run), (40, None), (45, None)):
            conn.execute(
                "INSERT INTO schedule_ticks (due_at, schedule, claimed_at, claimed_by, outcome, run_id) "
                "VALUES (?, 's', ?, 'h:1:n', ?, ?)",
                (days_ago(days), days_ago(days), "started" if run_id else "skipped", run_id),
            )
        newest = days_ago(2)
        conn.execute(
            "INSERT INTO schedule_ticks (due_at, schedule, claimed_at, claimed_by, outcome) "
            "VALUES (?, 's', ?, 'h:1:n', 'skipped')",
            (newest, newest),
        )
    settings = make_settings(tmp_path, source_url=SOURCE, run_retention_days=30)
    await aiohttp_client(create_app(settings, job=ScriptedJob()))
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT due_at FROM schedule_ticks").fetchall() == [(newest,)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
