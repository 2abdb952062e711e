"""Read-only access to the database file, for audits (``product-sync runs``): nothing is ever written."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service.database.errors import DatabaseError, DatabaseNotFound, SchemaTooOld
from service.database.migrations import load_migrations
from service.database.sqlite import file_uri

_READ_ONLY_ATTEMPTS = 3
_HAS_MIGRATIONS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"


def query_read_only(
    path: Path,
    migrations_dir: Path,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    busy_timeout_s: float = 5.0,
) -> list[sqlite3.Row]:
    """Run one query on the database without writing anything: not the file, nor a -wal or -shm.

    Works for a reader who may not write the database's directory. While a process has the database
    open, its -wal and -shm files exist and ``mode=ro`` reads through them (the -shm only needs to be
    readable). With no -wal file the database file holds every commit, and ``mode=ro`` would have to
    create the -wal and -shm (and fails where it may not), so the file is read as ``immutable=1``, which
    skips them. A writer opening or closing the file in between is noticed, and the query runs again.
    No migration is applied: an older schema is an error (:class:`SchemaTooOld`).
    """
    expected = len(load_migrations(migrations_dir))
    wal = Path(f"{path}-wal")
    for _ in range(_READ_ONLY_ATTEMPTS):
        if not path.exists():
            raise DatabaseNotFound(f"no database at {path}")
        had_wal = wal.exists()
        try:
            rows = _query_read_only_once(path, expected, sql, params, busy_timeout_s, immutable=not had_wal)
        except sqlite3.DatabaseError:
            # Also "malformed": an immutable read is not protected from a checkpoint rewriting pages.
            if wal.exists() != had_wal:
                continue
            raise
        # A -wal that appeared during an immutable read holds commits the read did not see.
        if had_wal or not wal.exists():
            return rows
    raise DatabaseError(f"database {path} was opened and closed by other processes during every read")


def _query_read_only_once(
    path: Path,
    expected_version: int,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any],
    busy_timeout_s: float,
    *,
    immutable: bool,
) -> list[sqlite3.Row]:
    uri = file_uri(path, "mode=ro&immutable=1" if immutable else "mode=ro")
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout_s)
    try:
        conn.row_factory = sqlite3.Row
        version = _schema_version(conn)
        if version < expected_version:
            raise SchemaTooOld(
                f"the schema of {path} is at version {version}, this code expects {expected_version}: "
                "run `product-sync migrate` (or start the service) first"
            )
        rows: list[sqlite3.Row] = conn.execute(sql, params).fetchall()
        return rows
    finally:
        conn.close()


def _schema_version(conn: sqlite3.Connection) -> int:
    """The newest migration applied; 0 for a file no migration ever ran on (an empty database)."""
    if conn.execute(_HAS_MIGRATIONS_TABLE).fetchone() is None:
        return 0
    (version,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(version)
