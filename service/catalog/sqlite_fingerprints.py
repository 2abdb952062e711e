"""The SQLite catalog's fingerprint lookup, run in the mapping workers (stdlib ``sqlite3`` only)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.catalog.sink import StoredFingerprints
from service.catalog.sql import SELECT_FINGERPRINTS
from service.database.list_params import json_array


@dataclass(frozen=True, slots=True)
class SqliteFingerprints:
    """Reads the database file read-only; in WAL mode such a reader never waits for the service's writes.

    ``query`` selects (external id, content hash, source hash) for the ids in its last parameter, after
    the ``scope`` parameters: the SQLite catalog's products by default, or a shop sink's links.
    """

    path: Path
    query: str = SELECT_FINGERPRINTS["sqlite"]
    scope: tuple[str, ...] = ()

    def __call__(self, external_ids: Sequence[str]) -> Mapping[str, StoredFingerprints]:
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                found = conn.execute(self.query, (*self.scope, json_array(external_ids))).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return {}  # every item is then mapped, which is only slower
        return {external_id: StoredFingerprints(content, source) for external_id, content, source in found}
