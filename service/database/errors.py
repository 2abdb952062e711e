"""Named errors of the database layer; each is also what the callers catch, never a bare sqlite3 error."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class DatabaseError(Exception):
    """The database could not be opened, migrated or written."""


class DatabaseFileGone(DatabaseError, sqlite3.OperationalError):
    """The path no longer leads to the file this process opened: it was deleted, or another file took
    its place.

    Also an ``sqlite3.OperationalError``, so whatever already copes with a failing database (the
    watchdog, retention, the routes) copes with this too. Open connections would go on reading and
    writing the old file, which nobody will see again, so every read and write refuses instead.
    """

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"database file {path} {what} after this process opened it; restart the service")
        self.path = path


class DatabaseNotFound(DatabaseError):
    """A read-only open found no database file at the path (and created none)."""


class SchemaTooOld(DatabaseError):
    """The database's schema is older than this code expects (``product-sync migrate`` brings it up)."""
