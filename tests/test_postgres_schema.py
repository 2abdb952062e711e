"""The PostgreSQL schema on a real cluster: every migration applies once (also when replicas start
together), edits are refused, and the ledger's rules are the server's: one running run, final rows,
runs born running, consistent outcomes, one row per schedule tick, totals kept by a trigger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from service.database.migrations import MigrationError, load_migrations
from service.database.postgres_migrations import POSTGRES_MIGRATIONS_DIR, apply_postgres_migrations

pytestmark = pytest.mark.postgres

START = """
INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)
VALUES ('running', now(), now(), 'admin', 'host:1:a') RETURNING id
"""
DRY_START = """
INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner, dry_run)
VALUES ('running', now(), now(), 'admin', 'host:1:a', true) RETURNING id
"""
FINISH = (
    "UPDATE runs SET status = $2, finished_at = now(), duration_s = 1.5 WHERE id = $1 AND status = 'running'"
)


@pytest.fixture
async def conn(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres_url)
    await apply_postgres_migrations(connection)
    yield connection
    await connection.close()


async def test_every_migration_applies_once_and_is_recorded_with_its_checksum(postgres_url: str) -> None:
    connection = await asyncpg.connect(postgres_url)
    try:
        expected = load_migrations(POSTGRES_MIGRATIONS_DIR)
        assert await apply_postgres_migrations(connection) == [m.version for m in expected]
        assert await apply_postgres_migrations(connection) == []
        recorded = await connection.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
        assert [tuple(row) for row in recorded] == [(m.version, m.name, m.checksum) for m in expected]
        tables = {
            row[0]
            for row in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert tables >= {
            "runs",
            "run_errors",
            "run_changes",
            "run_totals",
            "schedule_ticks",
            "categories",
            "products",
            "medusa_products",
            "medusa_categories",
            "webhook_targets",
            "webhook_deliveries",
        }
    finally:
        await connection.close()


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    connections = [await asyncpg.connect(postgres_url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(apply_postgres_migrations(c) for c in connections))
        versions = [m.version for m in load_migrations(POSTGRES_MIGRATIONS_DIR)]
        assert sorted(v for each in applied for v in each) == versions  # each file by exactly one
        assert await connections[0].fetchval("SELECT count(*) FROM schema_migrations") == len(versions)
    finally:
        for connection in connections:
            await connection.close()


async def test_an_edited_applied_migration_is_refused(postgres_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (id integer PRIMARY KEY);\n")
    connection = await asyncpg.connect(postgres_url)
    try:
        await apply_postgres_migrations(connection, tmp_path)
        (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (id integer PRIMARY KEY, x text);\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_postgres_migrations(connection, tmp_path)
        (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (id integer PRIMARY KEY);\n")
        (tmp_path / "0002_bad.sql").write_text("CREATE TABLE two (id integer PRIMARY KEY);\nSELECT nope;\n")
        with pytest.raises(MigrationError, match="0002_bad failed"):
            await apply_postgres_migrations(connection, tmp_path)
        # The failed file left nothing behind: its transaction rolled back.
        assert await connection.fetchval("SELECT to_regclass('two')") is None
        assert await connection.fetchval("SELECT max(version) FROM schema_migrations") == 1
    finally:
        await connection.close()


async def test_one_running_run_across_every_connection(conn: asyncpg.Connection, postgres_url: str) -> None:
    first = await conn.fetchval(START)
    other = await asyncpg.connect(postgres_url)
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await other.fetchval(START)
        await conn.execute(FINISH, first, "success")
        second = await other.fetchval(START)  # ids may skip: a refused insert still used one
        assert second > first
        assert await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'running'") == 1
    finally:
        await other.close()


async def test_finished_runs_are_final_and_runs_start_running(conn: asyncpg.Connection) -> None:
    run = await conn.fetchval(START)
    assert await conn.execute(FINISH, run, "success") == "UPDATE 1"
    assert await conn.execute(FINISH, run, "success") == "UPDATE 0"  # the guard: no longer running
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="final"):
        await conn.execute("UPDATE runs SET created = 5 WHERE id = $1", run)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="must start as running"):
        await conn.execute(
            "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner, finished_at)"
            " VALUES ('success', now(), now(), 'admin', 'h', now())"
        )


async def test_outcomes_are_consistent(conn: asyncpg.Connection) -> None:
    run = await conn.fetchval(START)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(FINISH, run, "error")  # an error needs its message
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(FINISH, run, "cancelled")  # a cancel needs who
    await conn.execute(
        "UPDATE runs SET status = 'error', finished_at = now(), error_message = 'boom' WHERE id = $1", run
    )


async def test_a_tick_is_one_row_and_totals_count_real_runs_only(conn: asyncpg.Connection) -> None:
    run = await conn.fetchval(START)
    tick = (
        "INSERT INTO schedule_ticks (due_at, schedule, claimed_at, claimed_by, outcome, run_id)"
        " VALUES ('2026-12-01T17:00:30Z', 's', now(), $1, 'started', $2)"
    )
    await conn.execute(tick, "a", run)
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(tick, "b", run)
    await conn.execute("UPDATE runs SET created = 7 WHERE id = $1", run)
    await conn.execute(FINISH, run, "success")
    dry = await conn.fetchval(DRY_START)
    await conn.execute("UPDATE runs SET created = 100 WHERE id = $1", dry)
    await conn.execute(FINISH, dry, "success")
    totals = await conn.fetchrow("SELECT runs, created, duration_s FROM run_totals WHERE status = 'success'")
    assert totals is not None and tuple(totals) == (1, 7, 1.5)  # the dry run's 100 are not counted


# Each foreign key with the indexes of its table that a lookup ``column = value`` can use: full ones,
# and partial ones whose condition is only that their first column is not NULL.
_FOREIGN_KEYS_AND_INDEXES = """
SELECT c.conrelid::regclass::text AS table_name,
       (SELECT array_agg(a.attname ORDER BY k.n)
        FROM unnest(c.conkey) WITH ORDINALITY AS k (attnum, n)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS key_columns,
       (SELECT coalesce(array_agg(array_to_string(ARRAY(
                   SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   ORDER BY k.n), ',')), '{}')
        FROM pg_index i
        WHERE i.indrelid = c.conrelid
          AND (i.indpred IS NULL
               OR pg_get_expr(i.indpred, i.indrelid) = '(' || (
                   SELECT a.attname FROM pg_attribute a
                   WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]) || ' IS NOT NULL)')
       ) AS indexes
FROM pg_constraint c
WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
"""


async def test_every_foreign_key_leads_an_index(conn: asyncpg.Connection) -> None:
    """PostgreSQL indexes the referenced side of a key only: deleting a run (retention) would otherwise
    scan every table that refers to runs, the whole catalog among them, once per run."""
    keys = await conn.fetch(_FOREIGN_KEYS_AND_INDEXES)
    unindexed = [
        f"{key['table_name']}({', '.join(key['key_columns'])})"
        for key in keys
        if not any(
            index.split(",")[: len(key["key_columns"])] == list(key["key_columns"])
            for index in key["indexes"]
        )
    ]
    assert len(keys) >= 10
    assert unindexed == []
