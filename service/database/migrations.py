"""Numbered ``.sql`` files in ``migrations/``, applied in order, each recorded in ``schema_migrations``."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from service.support.timeutil import to_iso, utc_now

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """A migration file is misnamed, was edited after being applied, or failed to apply."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must run 1..n without gaps, found {versions}")
    return migrations


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


async def apply_migrations(conn: aiosqlite.Connection, directory: Path) -> list[int]:
    """Apply the migrations not yet recorded; return the versions applied now.

    Each file runs in its own transaction together with its record, so a crash mid-migration leaves
    the database at the previous version. Two processes starting at once serialise on BEGIN IMMEDIATE.
    """
    migrations = load_migrations(directory)
    await conn.execute(_CREATE_TABLE)
    applied_now: list[int] = []
    for migration in migrations:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute(
                "SELECT checksum FROM schema_migrations WHERE version = ?", (migration.version,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is not None:
                await conn.execute("ROLLBACK")
                if row[0] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied"
                    )
                continue
            # executescript would COMMIT first; run the statements one by one inside our transaction.
            for statement in _split_statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                (migration.version, migration.name, migration.checksum, _now()),
            )
            await conn.execute("COMMIT")
            applied_now.append(migration.version)
        except sqlite3.Error as exc:
            await conn.execute("ROLLBACK")
            raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
    return applied_now


def _split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (trigger bodies contain ';', so ask SQLite)."""
    statements: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in current.splitlines()
    ):
        raise MigrationError(f"incomplete statement at end of migration: {current.strip()[:80]!r}")
    return statements


def _now() -> str:
    return to_iso(utc_now())
