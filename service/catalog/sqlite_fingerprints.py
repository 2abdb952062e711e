"""The SQLite catalog's fingerprint lookup, run in the mapping workers (stdlib ``sqlite3`` only)."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
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
            found = _reader(self.path).execute(self.query, (*self.scope, json_array(external_ids))).fetchall()
        except (sqlite3.Error, OSError):
            return {}  # every item is then mapped, which is only slower
        return {external_id: StoredFingerprints(content, source) for external_id, content, source in found}


def _reader(path: Path) -> sqlite3.Connection:
    """This thread's read-only connection to the file now at ``path``.

    Kept from chunk to chunk: a new connection reads the schema and starts with a cold page cache, which
    was half of a lookup's time. Each statement is its own read transaction, so a kept connection still
    sees every commit. It is keyed by the file's identity, so a new catalog made at the path gets a new
    one (the kept connection holds the old file's inode, so a new file never has its number).
    """
    resolved = path.resolve()
    found = os.stat(resolved)
    return _open_reader(resolved, found.st_dev, found.st_ino, threading.get_ident())


# A worker process reads one catalog, from its one thread: a few entries cover a service's lookups (in
# the workers, and in the threads of a small feed's run), and an evicted connection closes when freed.
@functools.lru_cache(maxsize=8)
def _open_reader(path: Path, device: int, inode: int, thread: int) -> sqlite3.Connection:
    # Any thread may take it: a finished thread's number can be a new thread's, never two live ones'.
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
