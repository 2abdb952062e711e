"""The PostgreSQL schema: numbered ``.sql`` files in ``migrations/postgres/``, applied under a lock.

The same files model as SQLite's (numbered, checksummed, recorded in ``schema_migrations``, one
transaction per file). Replicas starting together serialise on a transaction-level advisory lock, so
each file is applied once: the second replica finds it recorded and checks its checksum instead.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.database.migrations import MigrationError, load_migrations

POSTGRES_MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations" / "postgres"
# One key for "the schema is being changed", the same in every replica (any constant would do).
MIGRATION_LOCK_KEY = 0x70726F6475637473  # "products" in ASCII

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_LOCK = "SELECT pg_advisory_xact_lock($1)"
# Our sessions give up waiting for a lock after the hold timeout; a replica starting while another one
# migrates (an index built on a large catalog, say) waits for as long as that takes instead.
_WAIT_AS_LONG_AS_IT_TAKES = "SET LOCAL lock_timeout = 0"
_RECORDED = "SELECT checksum FROM schema_migrations WHERE version = $1"
_RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


async def apply_postgres_migrations(
    conn: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record], directory: Path = POSTGRES_MIGRATIONS_DIR
) -> list[int]:
    """Apply the migrations not yet recorded; return the versions this call applied."""
    migrations = load_migrations(directory)
    async with conn.transaction():
        await conn.execute(_WAIT_AS_LONG_AS_IT_TAKES)
        # Under the lock too: two CREATE TABLE IF NOT EXISTS at once can still collide in the catalog.
        await conn.execute(_LOCK, MIGRATION_LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
    applied_now: list[int] = []
    for migration in migrations:
        label = f"{migration.version:04d}_{migration.name}"
        try:
            async with conn.transaction():
                await conn.execute(_WAIT_AS_LONG_AS_IT_TAKES)
                await conn.execute(_LOCK, MIGRATION_LOCK_KEY)
                recorded = await conn.fetchval(_RECORDED, migration.version)
                if recorded is not None:
                    if recorded != migration.checksum:
                        raise MigrationError(f"migration {label} changed after it was applied")
                    continue
                await conn.execute(migration.sql)  # no arguments: the whole script, in this transaction
                await conn.execute(_RECORD, migration.version, migration.name, migration.checksum)
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"migration {label} failed: {exc}") from exc
        applied_now.append(migration.version)
    return applied_now
