"""Named errors of the database layer, and the tuples of faults callers catch instead of a driver's."""

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


# What callers outside the database layer catch when storage fails, whichever backend is behind it:
# the named errors above and the driver's own (sqlite3 today; PostgreSQL's driver joins them when the
# service runs on it, issue 18). Catching these, a caller never names a driver.
STORAGE_FAULTS = (DatabaseError, sqlite3.Error)
# The faults worth trying again after a moment: a lock held past the busy timeout, a busy file.
TRANSIENT_STORAGE_FAULTS = (sqlite3.OperationalError,)


class DatabaseNotFound(DatabaseError):
    """A read-only open found no database file at the path (and created none)."""


class SchemaTooOld(DatabaseError):
    """The database's schema is older than this code expects (``product-sync migrate`` brings it up)."""
