"""The runs ledger: start, progress, finish and recover runs, with every rule checked by SQLite."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import aiosqlite

from service.ledger import queries
from service.ledger.db import Database
from service.ledger.owner import OwnerLock
from service.timeutil import from_iso, to_iso, utc_now

log = logging.getLogger(__name__)

RunStatus = Literal["running", "success", "error", "cancelled"]
FinalStatus = Literal["success", "error", "cancelled"]

INTERRUPTED_MESSAGE = "Sync interrupted: the service process running it stopped unexpectedly"
SHUTDOWN_MESSAGE = "Sync interrupted by service shutdown"


class RunAlreadyRunning(Exception):
    """A trigger found a run in progress (in this process or another one sharing the file)."""

    def __init__(self, running: RunRecord) -> None:
        super().__init__(f"run {running.id} is already running")
        self.running = running


class NoRunRunning(Exception):
    """A cancel found nothing to cancel."""


class RunNoLongerRunning(Exception):
    """A guarded write found its run already finished (recovered as stalled, cancelled, ...)."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} is no longer running")
        self.run_id = run_id


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    status: RunStatus
    started_at: str
    finished_at: str | None
    duration_s: float | None
    heartbeat_at: str
    error_message: str | None
    created: int
    updated: int
    unchanged: int
    errors: int
    categories_created: int
    processed: int
    total: int | None
    triggered_by: str
    cancel_requested_by: str | None
    cancelled_by: str | None
    owner: str
    source: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        # Every runs query selects queries.RUN_COLUMNS, which lists these fields in this order (a test
        # checks it): by position is a third of the cost by name, and status polls do this each time.
        return cls(*row)

    @property
    def is_running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """What one committed batch did; added to the run's counters in the same transaction."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: int = 0
    categories_created: int = 0
    processed: int = 0
    total: int | None = None

    def __add__(self, other: BatchCounts) -> BatchCounts:
        """Counts of two batches together (the later batch's total wins when it tells one)."""
        return BatchCounts(
            created=self.created + other.created,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            errors=self.errors + other.errors,
            categories_created=self.categories_created + other.categories_created,
            processed=self.processed + other.processed,
            total=other.total if other.total is not None else self.total,
        )


@dataclass(frozen=True, slots=True)
class ItemError:
    position: int
    external_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class RunErrorRecord:
    id: int
    position: int
    external_id: str | None
    reason: str
    recorded_at: str


class Ledger:
    def __init__(self, db: Database, owner: OwnerLock, stall_timeout_s: float) -> None:
        self.db = db
        self.owner = owner
        self._stall_timeout = timedelta(seconds=stall_timeout_s)
        self._latest: tuple[sqlite3.Row, RunRecord] | None = None  # the last latest_run() row, and its record

    # --- reads (read connection: never queued behind a sync batch) -------------------------------

    async def latest_run(self) -> RunRecord | None:
        """The newest run. While its row reads the same, the same record comes back, so that callers
        can keep what they derived from it (the status poll's body) by checking identity."""
        row = await self.db.fetch_one(queries.LATEST_RUN)
        if row is None:
            return None
        if self._latest is None or self._latest[0] != row:  # sqlite3.Row compares its values
            self._latest = (row, RunRecord.from_row(row))
        return self._latest[1]

    async def get_run(self, run_id: int) -> RunRecord | None:
        row = await self.db.fetch_one(queries.RUN_BY_ID, (run_id,))
        return RunRecord.from_row(row) if row else None

    async def list_runs(self, limit: int, before_id: int | None, status: str | None) -> list[RunRecord]:
        rows = await self.db.fetch_all(
            queries.LIST_RUNS, {"limit": limit, "before_id": before_id, "status": status}
        )
        return [RunRecord.from_row(row) for row in rows]

    async def list_run_errors(self, run_id: int, limit: int, after_id: int | None) -> list[RunErrorRecord]:
        rows = await self.db.fetch_all(
            queries.LIST_RUN_ERRORS, {"run_id": run_id, "limit": limit, "after_id": after_id}
        )
        return [RunErrorRecord(*row) for row in rows]

    # --- liveness -----------------------------------------------------------------------------

    def is_stalled(self, run: RunRecord, now: datetime | None = None) -> bool:
        return (now or utc_now()) - from_iso(run.heartbeat_at) > self._stall_timeout

    def _why_dead(self, run: RunRecord, now: datetime) -> str | None:
        """Why ``run`` can no longer finish by itself, or None while its owner is alive and progressing."""
        if not self.owner.is_alive(run.owner):
            return INTERRUPTED_MESSAGE
        if self.is_stalled(run, now):
            return self.stall_message()
        return None

    def stall_message(self) -> str:
        seconds = self._stall_timeout.total_seconds()
        return f"Sync stalled: no progress for {seconds:g} s; the run was failed so new syncs can start"

    async def recover_dead_runs(self) -> RunRecord | None:
        """Fail a running row whose owner died or hung; return the recovered row, if any."""
        # Status polls call this while another process runs a sync: a live run is told apart on the
        # read connection, so the write lock (shared with that run's batches) is only taken to recover.
        running = await self._running_or_none()
        if running is None or self._why_dead(running, utc_now()) is None:
            return None
        async with self.db.transaction() as conn:
            return await self._recover_in(conn, utc_now())

    async def _recover_in(self, conn: aiosqlite.Connection, now: datetime) -> RunRecord | None:
        rows = list(await conn.execute_fetchall(queries.RUNNING_RUN))  # one hop to the writer's thread
        if not rows:
            return None
        running = RunRecord.from_row(rows[0])
        reason = self._why_dead(running, now)
        if reason is None:
            return None
        await self._finish_in(conn, running.id, "error", reason, None)
        log.warning("recovered run %s: %s", running.id, reason, extra={"run_id": running.id})
        return running

    # --- writes (single write connection) -------------------------------------------------------

    async def start_run(self, triggered_by: str, source: str | None) -> RunRecord:
        """Insert a new running row, or raise RunAlreadyRunning with the run that is in progress.

        The partial unique index on status='running' is the rule; the check before it only turns a
        dead owner's leftover row into a recorded interruption first.
        """
        now = utc_now()
        # Fast path for the common 409: a live run seen on the read connection needs no write lock, so a
        # trigger during a sync doesn't queue behind the sync's batch transactions.
        running = await self._running_or_none()
        if running is not None and self._why_dead(running, now) is None:
            raise RunAlreadyRunning(running)
        try:
            # Each statement is a hop to the write connection's thread and back: three here (BEGIN, the
            # INSERT with its RETURNING row, COMMIT), which is most of a trigger's time on an idle service.
            async with self.db.transaction() as conn:
                if running is not None:
                    # Only a row seen running can be a dead owner's; one started since is alive.
                    await self._recover_in(conn, now)
                inserted = list(
                    await conn.execute_fetchall(
                        queries.INSERT_RUN,
                        {
                            "now": to_iso(now),
                            "triggered_by": triggered_by,
                            "owner": self.owner.owner_id,
                            "source": source,
                        },
                    )
                )
                assert inserted, "INSERT ... RETURNING yields the new row"
                run = RunRecord.from_row(inserted[0])
        except sqlite3.IntegrityError:
            running = await self._running_or_none()
            if running is None:  # finished between our insert attempt and this read: rare, say so plainly
                raise
            raise RunAlreadyRunning(running) from None
        return run

    async def _running_or_none(self) -> RunRecord | None:
        row = await self.db.fetch_one(queries.RUNNING_RUN)
        return RunRecord.from_row(row) if row else None

    async def record_batch(
        self, conn: aiosqlite.Connection, run_id: int, counts: BatchCounts, errors: Sequence[ItemError]
    ) -> None:
        """Inside the caller's transaction: add counters and item errors, or raise RunNoLongerRunning."""
        now = to_iso(utc_now())
        cursor = await conn.execute(
            queries.RECORD_PROGRESS,
            {
                "run_id": run_id,
                "now": now,
                "created": counts.created,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "errors": counts.errors,
                "categories_created": counts.categories_created,
                "processed": counts.processed,
                "total": counts.total,
            },
        )
        if cursor.rowcount != 1:
            raise RunNoLongerRunning(run_id)
        if errors:
            await conn.executemany(
                queries.INSERT_RUN_ERROR,
                [(run_id, e.position, e.external_id, e.reason, now) for e in errors],
            )

    async def record_progress(self, run_id: int, counts: BatchCounts, errors: Sequence[ItemError]) -> None:
        async with self.db.transaction() as conn:
            await self.record_batch(conn, run_id, counts, errors)

    async def heartbeat(self, run_id: int) -> None:
        async with self.db.transaction() as conn:
            cursor = await conn.execute(queries.HEARTBEAT, {"run_id": run_id, "now": to_iso(utc_now())})
            if cursor.rowcount != 1:
                raise RunNoLongerRunning(run_id)

    async def finish_run(
        self,
        run_id: int,
        status: FinalStatus,
        *,
        error_message: str | None = None,
        cancelled_by: str | None = None,
    ) -> RunRecord | None:
        """Finish a running row and return it; None when it had already finished (that outcome stands)."""
        async with self.db.transaction() as conn:
            return await self._finish_in(conn, run_id, status, error_message, cancelled_by)

    async def _finish_in(
        self,
        conn: aiosqlite.Connection,
        run_id: int,
        status: FinalStatus,
        error_message: str | None,
        cancelled_by: str | None,
    ) -> RunRecord | None:
        params = {
            "status": status,
            "now": to_iso(utc_now()),
            "error_message": error_message,
            "cancelled_by": cancelled_by,
            "run_id": run_id,
        }
        # RETURNING hands back the row as written: no re-read through the other connection.
        async with conn.execute(queries.FINISH_RUN, params) as cursor:
            row = await cursor.fetchone()
        return RunRecord.from_row(row) if row else None

    async def request_cancel(self, requested_by: str) -> int:
        """Flag the running run for cancellation (its owner, in any process, stops at its next check)."""
        async with (
            self.db.transaction() as conn,
            conn.execute(queries.REQUEST_CANCEL, {"by": requested_by}) as cursor,
        ):
            row = await cursor.fetchone()
        if row is None:
            raise NoRunRunning()
        return int(row[0])

    async def prune(self, error_days: int | None, run_days: int | None) -> tuple[int, int]:
        """Retention: delete item errors (and optionally runs) older than N days, never the newest run."""
        now = utc_now()
        errors_deleted = runs_deleted = 0
        async with self.db.transaction() as conn:
            if error_days is not None:
                cursor = await conn.execute(
                    queries.PRUNE_RUN_ERRORS, {"cutoff": to_iso(now - timedelta(days=error_days))}
                )
                errors_deleted = cursor.rowcount
            if run_days is not None:
                cursor = await conn.execute(
                    queries.PRUNE_RUNS, {"cutoff": to_iso(now - timedelta(days=run_days))}
                )
                runs_deleted = cursor.rowcount
        return errors_deleted, runs_deleted
