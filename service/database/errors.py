"""Named errors of the database layer, and the tuples of faults callers catch instead of a driver's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg


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


class DatabaseUnreachable(DatabaseError):
    """PostgreSQL could not be reached, or dropped the session (a restart, a network cut)."""


class DatabaseBusy(DatabaseError):
    """Another process holds the write lock: past PostgreSQL's hold timeout, or at all for a write
    that would not wait (``transaction(wait=False)``, on either backend)."""


class DatabaseNotFound(DatabaseError):
    """A read-only open found no database file at the path (and created none)."""


class SchemaTooOld(DatabaseError):
    """The database's schema is older than this code expects (``product-sync migrate`` brings it up)."""


# What callers outside the database layer catch when storage fails, whichever backend is behind it:
# the named errors above and the drivers' own (sqlite3, asyncpg). Catching these, a caller never names
# a driver.
STORAGE_FAULTS = (DatabaseError, sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError)
# The faults worth trying again after a moment: a lock held past the busy timeout, a busy file, a
# PostgreSQL server restarting (the pool reconnects), a transaction that lost a deadlock.
TRANSIENT_STORAGE_FAULTS = (
    sqlite3.OperationalError,
    DatabaseUnreachable,
    DatabaseBusy,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)
# A rule of the schema refused a write (a second running run, a finished row changed).
INTEGRITY_FAULTS = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)
