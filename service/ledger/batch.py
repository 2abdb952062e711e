"""One batch's transaction, shared by the sink's catalog writes and the run's counters.

The ledger opens it (:meth:`Ledger.batch`); the sink writes its rows through it and records what the
batch did; the counters and the item errors are added in the same transaction, so the ledger always
states exactly what the catalog holds from that run, whatever crashes or cancels in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from service.database.access import Dialect, Params, Row, Statements
from service.domain.outcomes import BatchCounts, ItemError, ProductChange
from service.ledger import queries
from service.ledger.records import RunNoLongerRunning
from service.support.timeutil import to_iso, utc_now


class BatchNotRecorded(Exception):
    """A batch's transaction ended without :meth:`RunBatch.record`: nothing of it is committed."""


class RunBatch:
    """What a sink may do inside a batch's transaction: read and write catalog rows, and record counts."""

    __slots__ = ("_changes", "_counts", "_errors", "_tx")

    def __init__(self, tx: Statements) -> None:
        self._tx = tx
        self._counts: BatchCounts | None = None
        self._errors: Sequence[ItemError] = ()
        self._changes: Sequence[ProductChange] = ()

    async def fetch_all(self, sql: str, params: Params = ()) -> Sequence[Row]:
        return await self._tx.fetch_all(sql, params)

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._tx.execute(sql, params)

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        await self._tx.execute_many(sql, rows)

    async def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        await self._tx.copy_rows(table, columns, rows)

    def record(
        self, counts: BatchCounts, errors: Sequence[ItemError], changes: Sequence[ProductChange] = ()
    ) -> None:
        """What the batch did; added to the run's row (and its detail) when the transaction commits."""
        self._counts, self._errors, self._changes = counts, errors, changes

    def recorded(self) -> Recorded:
        if self._counts is None:
            raise BatchNotRecorded("a batch must record its counts before its transaction commits")
        return Recorded(self._counts, self._errors, self._changes)


class Recorded(NamedTuple):
    counts: BatchCounts
    errors: Sequence[ItemError]
    changes: Sequence[ProductChange] = ()


async def record_batch(
    tx: Statements, dialect: Dialect, run_id: int, owner_id: str, recorded: Recorded
) -> None:
    """Inside the batch's transaction: add counters, item errors and changes, or raise RunNoLongerRunning
    (the run finished meanwhile, or this process no longer owns it)."""
    counts, errors, changes = recorded
    now = to_iso(utc_now())
    changed = await tx.execute(
        queries.RECORD_PROGRESS[dialect],
        {
            "run_id": run_id,
            "owner": owner_id,
            "now": now,
            "created": counts.created,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "errors": counts.errors,
            "categories_created": counts.categories_created,
            "processed": counts.processed,
            "total": counts.total,
            "removed": counts.removed,
            "restored": counts.restored,
        },
    )
    if changed != 1:
        raise RunNoLongerRunning(run_id)
    if errors:
        await tx.execute_many(
            queries.INSERT_RUN_ERROR,
            [(run_id, e.position, e.external_id, e.reason, now) for e in errors],
        )
    if changes:
        await tx.execute_many(
            queries.INSERT_RUN_CHANGE,
            [(run_id, c.external_id, c.handle, c.kind, c.action, c.fields) for c in changes],
        )
