"""The upstream ids a run has already taken, so that a later item with the same id is a duplicate.

Kept for the whole run, whatever the sink did with the first copy (created, updated or found it
unchanged): only then is a duplicate reported on every run, and the first copy always wins. A feed may
hold millions of ids, so they live in a private temporary SQLite database (its pages spill to a
temporary file beyond a small cache) rather than in a Python set of the feed's size.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

from service.database.list_params import json_array, json_rows

_SCHEMA = (
    "CREATE TABLE seen (external_id TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID",
    # Ids of items that were item errors: still in the feed, so never taken for products gone upstream.
    "CREATE TABLE listed (external_id TEXT PRIMARY KEY) WITHOUT ROWID",
    # Catalog products the feed did not list, found at the end of a run.
    "CREATE TABLE missing (external_id TEXT PRIMARY KEY) WITHOUT ROWID",
)
_LIST = "INSERT OR IGNORE INTO listed (external_id) VALUES (?)"
_NOTE_MISSING = """
INSERT OR IGNORE INTO missing (external_id)
SELECT value FROM json_each(?)
WHERE NOT EXISTS (SELECT 1 FROM seen WHERE external_id = value)
  AND NOT EXISTS (SELECT 1 FROM listed WHERE external_id = value)
"""
_MISSING_AFTER = "SELECT external_id FROM missing WHERE external_id > ? ORDER BY external_id LIMIT ?"
_EARLIER = "SELECT external_id, position FROM seen WHERE external_id IN (SELECT value FROM json_each(?))"
# In the array's order, so that of two items of a batch with one id the first takes it.
_TAKE = """
INSERT OR IGNORE INTO seen (external_id, position)
SELECT value ->> 0, value ->> 1 FROM json_each(?) ORDER BY key
"""
# The same for ids at consecutive positions, from the first one on (a batch without item errors): one
# JSON text per id instead of an array of two, about half of what SQLite spends on each id here.
_TAKE_CONSECUTIVE = """
INSERT OR IGNORE INTO seen (external_id, position)
SELECT value, ?2 + key FROM json_each(?1) ORDER BY key
"""
_RELEASE = "DELETE FROM seen WHERE external_id = ? AND position = ?"
# Pages of the temporary database kept in memory; the rest goes to its temporary file.
_CACHE_KIB = 2048


class SeenIds:
    """The ids of one run in feed order; :meth:`first_positions` is called batch by batch, in order."""

    def __init__(self) -> None:
        # "" names a private temporary database, deleted when the connection closes.
        self._conn = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        for statement in _SCHEMA:
            self._conn.execute(statement)
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        async with self._lock:  # never while a thread still uses the connection
            self._conn.close()

    async def first_positions(self, ids: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Take ``(external id, position)`` pairs in feed order; return, for each position whose id was
        taken before (earlier in this batch or in an earlier one), the position that took it."""
        if not ids:
            return {}
        async with self._lock:  # one batch at a time, in feed order
            work = asyncio.ensure_future(asyncio.to_thread(self._take, ids))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # The thread goes on using the connection: the lock is held until it is done with it.
                await asyncio.wait([work])
                raise

    async def release(self, ids: Sequence[tuple[str, int]]) -> None:
        """Give back the ids of items the sink refused after all: a later item may then take them."""
        if ids:
            async with self._lock:
                self._conn.executemany(_RELEASE, ids)  # a few rows, rarely: not worth a thread

    async def list_errors(self, external_ids: Sequence[str]) -> None:
        """Items that were errors but named their id: the feed still lists those products."""
        if external_ids:
            async with self._lock:
                self._conn.executemany(_LIST, [(external_id,) for external_id in external_ids])

    async def note_missing(self, catalog_ids: Sequence[str]) -> int:
        """Keep those of ``catalog_ids`` the feed did not list; return how many they were."""
        if not catalog_ids:
            return 0
        async with self._lock:
            cursor = await asyncio.to_thread(self._conn.execute, _NOTE_MISSING, (json_array(catalog_ids),))
            return cursor.rowcount

    async def missing(self, after: str, limit: int) -> list[str]:
        """The products noted missing, in order, after ``after`` ("" for the first)."""
        async with self._lock:
            rows = await asyncio.to_thread(
                lambda: self._conn.execute(_MISSING_AFTER, (after, limit)).fetchall()
            )
        return [external_id for (external_id,) in rows]

    def _take(self, ids: Sequence[tuple[str, int]]) -> dict[int, int]:
        # One statement takes every id not taken yet, its rows read by SQLite rather than bound one by
        # one here while holding the GIL; positions are read back only when some id was taken already.
        first, last = ids[0][1], ids[-1][1]
        # Positions only grow, so a span as long as the list means no position is left out.
        if last - first == len(ids) - 1:
            taking = self._conn.execute(_TAKE_CONSECUTIVE, (json_array(i for i, _ in ids), first))
        else:
            taking = self._conn.execute(_TAKE, (json_rows(ids),))
        if taking.rowcount == len(ids):
            return {}
        wanted = json_array(external_id for external_id, _ in ids)
        taken: dict[str, int] = dict(self._conn.execute(_EARLIER, (wanted,)).fetchall())
        return {
            position: taken[external_id] for external_id, position in ids if taken[external_id] != position
        }
