"""Which fingerprint lookup the mapping workers get for the database a sink writes to."""

from __future__ import annotations

from pathlib import Path

from service.catalog.postgres_fingerprints import PostgresFingerprints
from service.catalog.sink import FingerprintLookup
from service.catalog.sqlite_fingerprints import SqliteFingerprints
from service.database.access import Database, Dialect


def fingerprint_lookup(
    database: Database, queries: dict[Dialect, str], scope: tuple[str, ...] = ()
) -> FingerprintLookup:
    """The lookup of ``database`` with its dialect's query (a worker reaches it at its ``address``)."""
    if database.dialect == "postgres":
        return PostgresFingerprints(database.address, queries["postgres"], scope)
    return SqliteFingerprints(Path(database.address), queries["sqlite"], scope)
