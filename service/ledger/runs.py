"""The runs ledger: start, progress, finish and recover runs, with every rule checked by the database.

The ledger owns its database handle and this process's owner lock: callers ask it questions (the
current status, a run, the metrics snapshot) and hand it writes (a run's start, a batch, the outcome).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from service.database.access import Database, Row, Statements
from service.database.errors import INTEGRITY_FAULTS, STORAGE_FAULTS, DatabaseBusy
from service.domain.outcomes import BatchCounts, ItemError
from service.ledger import queries
from service.ledger.batch import RunBatch, record_batch
from service.ledger.owner import Owner
from service.ledger.records import (
    INTERRUPTED_MESSAGE,
    FinalStatus,
    NoRunRunning,
    RunAlreadyRunning,
    RunChangeRecord,
    RunErrorRecord,
    RunNoLongerRunning,
    RunRecord,
    StartedVia,
    TickOutcome,
    TickSkipped,
    TickStarted,
    TickTaken,
)
from service.ledger.snapshot import LedgerSnapshot, read_snapshot
from service.support.timeutil import from_iso, to_iso, utc_now

log = logging.getLogger(__name__)


class LatestRunRecord:
    """The record of the newest run's row, built again only when the row reads differently.

    Status polls read the newest row many times a second and mostly find it as it was (a sync commits a
    few batches a second): comparing the row is far cheaper than building a record from it.
    """

    __slots__ = ("_record", "_row")

    def __init__(self) -> None:
        self._row: Row | None = None
        self._record: RunRecord | None = None

    def record_of(self, row: Row) -> RunRecord:
        if self._record is None or self._row != row:  # both drivers' rows compare their values
            self._row, self._record = row, RunRecord.from_row(row)
        return self._record


class Ledger:
    def __init__(self, db: Database, owner: Owner, stall_timeout_s: float) -> None:
        self._db = db
        self._dialect = db.dialect
        self._owner = owner
        self._stall_timeout = timedelta(seconds=stall_timeout_s)
        self._latest = LatestRunRecord()

    # --- reads (read connection: never queued behind a sync batch) -------------------------------

    async def latest_run(self) -> RunRecord | None:
        row = await self._db.fetch_one(queries.LATEST_RUN)
        return self._latest.record_of(row) if row else None

    async def current_status(self) -> RunRecord | None:
        """The newest run as the status endpoint reports it.

        Another process's run whose process died or hung is recorded as interrupted first, rather than
        reported running; if that write fails (a read-only file), the row is reported as it stands.
        """
        run = await self.latest_run()
        if run is None or not run.is_running or run.owner == self._owner.owner_id:
            return run
        try:
            # Never waiting for the write lock: a status answer must not hang on another process's
            # write (one frozen in the middle of it, say); the next status read tries again.
            if await self.recover_dead_runs(wait=False) is not None:
                return await self.latest_run()
        except DatabaseBusy:
            log.debug("run %s looks dead, but another process is writing: not recovered yet", run.id)
        except STORAGE_FAULTS as exc:
            log.warning("could not record the recovery of a dead run: %s", exc)
        return run

    async def schema_version(self) -> tuple[int, int]:
        """(the newest migration applied to the database, the newest this code knows)."""
        return await self._db.applied_version(), self._db.known_version

    async def snapshot(self) -> LedgerSnapshot:
        """Totals, the running run and the last finished one, for /metrics: one consistent read."""
        return read_snapshot(await self._db.fetch_all(queries.LEDGER_METRICS))

    async def get_run(self, run_id: int) -> RunRecord | None:
        row = await self._db.fetch_one(queries.RUN_BY_ID, (run_id,))
        return RunRecord.from_row(row) if row else None

    async def list_runs(self, limit: int, before_id: int | None, status: str | None) -> list[RunRecord]:
        rows = await self._db.fetch_all(
            queries.LIST_RUNS, {"limit": limit, "before_id": before_id, "status": status}
        )
        return [RunRecord.from_row(row) for row in rows]

    async def list_run_errors(self, run_id: int, limit: int, after_id: int | None) -> list[RunErrorRecord]:
        rows = await self._db.fetch_all(
            queries.LIST_RUN_ERRORS, {"run_id": run_id, "limit": limit, "after_id": after_id}
        )
        return [RunErrorRecord.from_row(row) for row in rows]

    async def list_run_changes(self, run_id: int, limit: int, after_id: int | None) -> list[RunChangeRecord]:
        rows = await self._db.fetch_all(
            queries.LIST_RUN_CHANGES, {"run_id": run_id, "limit": limit, "after_id": after_id}
        )
        return [RunChangeRecord.from_row(row) for row in rows]

    # --- liveness -----------------------------------------------------------------------------

    async def owner_lost(self) -> bool:
        """Whether this process lost its proof of life: its runs may be recovered by another process."""
        return await self._owner.is_lost()

    def is_stalled(self, run: RunRecord, now: datetime | None = None) -> bool:
        return (now or utc_now()) - from_iso(run.heartbeat_at) > self._stall_timeout

    async def _why_dead(self, run: RunRecord, now: datetime) -> str | None:
        """Why ``run`` can no longer finish by itself, or None while its owner is alive and progressing."""
        if not await self._owner.is_alive(run.owner):
            return INTERRUPTED_MESSAGE
        if self.is_stalled(run, now):
            return self.stall_message()
        return None

    def stall_message(self) -> str:
        seconds = self._stall_timeout.total_seconds()
        return f"Sync stalled: no progress for {seconds:g} s; the run was failed so new syncs can start"

    async def recover_dead_runs(self, *, wait: bool = True) -> RunRecord | None:
        """Fail a running row whose owner died or hung; return the recovered row, if any.

        ``wait=False``: DatabaseBusy at once, rather than a wait, if another process is writing.
        """
        # Status polls call this while another process runs a sync: a live run is told apart on the
        # read connection, so the write lock (shared with that run's batches) is only taken to recover.
        running = await self._running_or_none()
        if running is None or await self._why_dead(running, utc_now()) is None:
            return None
        async with self._db.transaction(wait=wait) as tx:
            return await self._recover_in(tx, utc_now())

    async def _recover_in(self, tx: Statements, now: datetime) -> RunRecord | None:
        rows = await tx.fetch_all(queries.RUNNING_RUN)  # one hop to the writer's thread
        if not rows:
            return None
        running = RunRecord.from_row(rows[0])
        reason = await self._why_dead(running, now)
        if reason is None:
            return None
        await self._finish_in(tx, running.id, "error", reason, None)
        log.warning("recovered run %s: %s", running.id, reason, extra={"run_id": running.id})
        return running

    # --- writes (single write connection) -------------------------------------------------------

    async def start_run(
        self,
        triggered_by: str,
        source: str | None,
        *,
        started_via: StartedVia = "manual",
        dry_run: bool = False,
    ) -> RunRecord:
        """Insert a new running row, or raise RunAlreadyRunning with the run that is in progress.

        The partial unique index on status='running' is the rule; the check before it only turns a
        dead owner's leftover row into a recorded interruption first.
        """
        now = utc_now()
        # Fast path for the common 409: a live run seen on the read connection needs no write lock, so a
        # trigger during a sync doesn't queue behind the sync's batch transactions.
        running = await self._running_or_none()
        if running is not None and await self._why_dead(running, now) is None:
            raise RunAlreadyRunning(running)
        await self._owner.renew()  # a run is started only under a live identity
        try:
            # Each statement is a hop to the write connection's thread and back: three here (BEGIN, the
            # INSERT with its RETURNING row, COMMIT), which is most of a trigger's time on an idle service.
            async with self._db.transaction() as tx:
                if running is not None:
                    # Only a row seen running can be a dead owner's; one started since is alive.
                    await self._recover_in(tx, now)
                run = await self._insert_run(tx, now, triggered_by, source, started_via, dry_run)
        except INTEGRITY_FAULTS:
            running = await self._running_or_none()
            if running is None:  # finished between our insert attempt and this read: rare, say so plainly
                raise
            raise RunAlreadyRunning(running) from None
        return run

    async def _insert_run(
        self,
        tx: Statements,
        now: datetime,
        triggered_by: str,
        source: str | None,
        started_via: StartedVia,
        dry_run: bool = False,
    ) -> RunRecord:
        inserted = await tx.fetch_all(
            queries.INSERT_RUN,
            {
                "now": to_iso(now),
                "triggered_by": triggered_by,
                "owner": self._owner.owner_id,
                "source": source,
                "started_via": started_via,
                "dry_run": dry_run,
            },
        )
        assert inserted, "INSERT ... RETURNING yields the new row"
        return RunRecord.from_row(inserted[0])

    async def claim_tick(
        self, due_at: datetime, schedule: str, source: str | None, *, catch_up: bool
    ) -> TickOutcome:
        """Claim the schedule's tick due at ``due_at`` and start its run, in one transaction.

        The tick's row is the claim: its primary key gives each tick to one process however many wake
        for it, and the one-running index still decides whether a run may start. A tick that finds a
        run in progress is recorded as skipped, with that run.
        """
        now = utc_now()
        due = to_iso(due_at)
        await self._owner.renew()
        async with self._db.transaction() as tx:
            if await tx.fetch_all(queries.TICK_CLAIMED, {"due_at": due}):
                return TickTaken()
            await self._recover_in(tx, now)  # a dead owner's row must not make the tick skip
            running = await tx.fetch_all(queries.RUNNING_RUN)
            tick = {
                "due_at": due,
                "schedule": schedule,
                "now": to_iso(now),
                "owner": self._owner.owner_id,
                "catch_up": catch_up,
            }
            if running:
                in_progress = RunRecord.from_row(running[0])
                skipped = {**tick, "outcome": "skipped", "run_id": in_progress.id}
                await tx.execute(queries.INSERT_TICK, skipped)
                return TickSkipped(in_progress)
            run = await self._insert_run(tx, now, "schedule", source, "schedule")
            await tx.execute(queries.INSERT_TICK, {**tick, "outcome": "started", "run_id": run.id})
            return TickStarted(run)

    async def latest_tick_due(self) -> datetime | None:
        """The due time of the newest tick any process claimed (None: the schedule never ticked here)."""
        row = await self._db.fetch_one(queries.LATEST_TICK)
        return from_iso(row[0]) if row and row[0] is not None else None

    async def tick_counts(self) -> dict[str, int]:
        """Claimed ticks by outcome ('started', 'skipped'), over every process sharing the file."""
        return {outcome: count for outcome, count in await self._db.fetch_all(queries.TICK_COUNTS)}

    async def _running_or_none(self) -> RunRecord | None:
        row = await self._db.fetch_one(queries.RUNNING_RUN)
        return RunRecord.from_row(row) if row else None

    @asynccontextmanager
    async def batch(self, run_id: int) -> AsyncIterator[RunBatch]:
        """The transaction of one batch: what the sink writes in it and the counts it records commit
        together, or neither does (RunNoLongerRunning when the run was finished meanwhile)."""
        async with self._db.transaction() as tx:
            batch = RunBatch(tx)
            yield batch
            await record_batch(tx, self._dialect, run_id, self._owner.owner_id, batch.recorded())

    async def record_progress(self, run_id: int, counts: BatchCounts, errors: Sequence[ItemError]) -> None:
        """A batch that wrote nothing but counts (jobs without a catalog)."""
        async with self.batch(run_id) as batch:
            batch.record(counts, errors)

    async def heartbeat(self, run_id: int) -> None:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                queries.HEARTBEAT[self._dialect],
                {"run_id": run_id, "now": to_iso(utc_now()), "owner": self._owner.owner_id},
            )
            if changed != 1:
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
        async with self._db.transaction() as tx:
            return await self._finish_in(tx, run_id, status, error_message, cancelled_by)

    async def _finish_in(
        self,
        tx: Statements,
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
        rows = await tx.fetch_all(queries.FINISH_RUN[self._dialect], params)
        return RunRecord.from_row(rows[0]) if rows else None

    async def request_cancel(self, requested_by: str) -> int:
        """Flag the running run for cancellation (its owner, in any process, stops at its next check)."""
        async with self._db.transaction() as tx:
            rows = await tx.fetch_all(queries.REQUEST_CANCEL, {"by": requested_by})
        if not rows:
            raise NoRunRunning()
        return int(rows[0][0])

    async def prune(self, error_days: int | None, run_days: int | None) -> tuple[int, int]:
        """Retention: delete item errors (and optionally runs) older than N days, never the newest run."""
        now = utc_now()
        errors_deleted = runs_deleted = 0
        async with self._db.transaction() as tx:
            if error_days is not None:
                errors_deleted = await tx.execute(
                    queries.PRUNE_RUN_ERRORS, {"cutoff": to_iso(now - timedelta(days=error_days))}
                )
            if run_days is not None:
                cutoff = {"cutoff": to_iso(now - timedelta(days=run_days))}
                runs_deleted = await tx.execute(queries.PRUNE_RUNS, cutoff)
                await tx.execute(queries.PRUNE_TICKS, cutoff)
        return errors_deleted, runs_deleted

    async def checkpoint(self) -> None:
        """Fold the run's writes into the main store now (SQLite's WAL into the file), rather than in
        the next small commit (a trigger)."""
        await self._db.checkpoint()
