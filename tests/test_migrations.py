"""Migrations: every numbered file applies to an empty database, once, and is recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.database.migrations import MigrationError, load_migrations
from service.database.sqlite import SqliteDatabase
from service.settings import DEFAULT_MIGRATIONS_DIR

EXPECTED_TABLES = {"schema_migrations", "runs", "run_errors", "categories", "products"}


def _schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()


async def test_all_migrations_apply_to_an_empty_database(tmp_path: Path) -> None:
    db_path = tmp_path / "fresh.db"
    database = await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)
    await database.close()
    names = {name for kind, name, _ in _schema(db_path) if kind == "table"}
    assert names >= EXPECTED_TABLES
    with sqlite3.connect(db_path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert versions == [m.version for m in load_migrations(DEFAULT_MIGRATIONS_DIR)]
    assert database.known_version == len(versions)


async def test_applying_twice_changes_nothing(tmp_path: Path) -> None:
    db_path = tmp_path / "twice.db"
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
    before = _schema(db_path)
    with sqlite3.connect(db_path) as conn:
        recorded = conn.execute("SELECT * FROM schema_migrations").fetchall()
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
    assert _schema(db_path) == before
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT * FROM schema_migrations").fetchall() == recorded


async def test_an_edited_applied_migration_is_refused(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_one.sql").write_text("CREATE TABLE one (id INTEGER PRIMARY KEY);\n")
    await (await SqliteDatabase.open(tmp_path / "a.db", migrations)).close()
    (migrations / "0001_one.sql").write_text("CREATE TABLE one (id INTEGER PRIMARY KEY, x TEXT);\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await SqliteDatabase.open(tmp_path / "a.db", migrations)


async def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_one.sql").write_text("CREATE TABLE one (id INTEGER PRIMARY KEY);\n")
    (migrations / "0002_bad.sql").write_text(
        "CREATE TABLE two (id INTEGER);\nINSERT INTO nowhere VALUES (1);\n"
    )
    with pytest.raises(MigrationError, match="0002_bad failed"):
        await SqliteDatabase.open(tmp_path / "b.db", migrations)
    with sqlite3.connect(tmp_path / "b.db") as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == [1]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "two" not in tables


def test_misnumbered_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations(tmp_path)


async def test_a_cancel_while_begin_waits_leaves_no_transaction_open(tmp_path: Path) -> None:
    """BEGIN queued behind another process's lock, then cancelled: the connection must stay usable."""
    import asyncio

    db_path = tmp_path / "cancel.db"
    database = await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR, busy_timeout_s=5)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: our BEGIN IMMEDIATE waits in SQLite

    async def write() -> None:
        async with database.transaction() as conn:
            await conn.execute("SELECT 1")

    try:
        task = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        task.cancel()
        blocker.execute("ROLLBACK")  # our BEGIN now goes through in aiosqlite's thread, after the cancel
        blocker.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with database.transaction() as conn:  # "cannot start a transaction within a transaction" before
            await conn.execute("SELECT 1")
    finally:
        await database.close()


async def test_runs_started_from_the_cli_before_0007_are_recorded_as_cli(tmp_path: Path) -> None:
    before = tmp_path / "before-0007"
    before.mkdir()
    for migration in sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql")):
        if int(migration.name[:4]) < 7:
            (before / migration.name).write_text(migration.read_text())
    db_path = tmp_path / "old.db"
    await (await SqliteDatabase.open(db_path, before)).close()
    with sqlite3.connect(db_path) as conn:
        for who in ("cli:alice", "admin"):
            conn.execute(
                "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner) "
                "VALUES ('running', '2026-01-07T13:33:12.000Z', '2026-01-07T13:33:12.000Z', ?, 'h:1:n')",
                (who,),
            )
            conn.execute(
                "UPDATE runs SET status = 'success', finished_at = '2026-01-07T13:33:13.000Z' "
                "WHERE status = 'running'"
            )
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT triggered_by, started_via FROM runs ORDER BY id").fetchall() == [
            ("cli:alice", "cli"),
            ("admin", "manual"),
        ]
        # The guard is back: a finished row still cannot change.
        with pytest.raises(sqlite3.IntegrityError, match="final"):
            conn.execute("UPDATE runs SET started_via = 'schedule'")
