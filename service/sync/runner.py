"""The one background sync task of this process: start it, watch it, stop it, record how it ended.

The ledger row is the truth; this object only holds the asyncio task so it can be cancelled and awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from dataclasses import dataclass, replace
from datetime import datetime

import aiohttp

from service.catalog.sink import CatalogSink
from service.database.errors import STORAGE_FAULTS, TRANSIENT_STORAGE_FAULTS, DatabaseFileGone
from service.domain.errors import SyncFailed
from service.ledger.records import (
    SHUTDOWN_MESSAGE,
    FinalStatus,
    RunNoLongerRunning,
    RunRecord,
    StartedVia,
    TickOutcome,
    TickStarted,
)
from service.ledger.retention import apply_retention
from service.ledger.runs import Ledger
from service.settings import Settings
from service.support.logs import run_id_var
from service.support.timeutil import from_iso, seconds_between, to_iso, utc_now
from service.sync.job import RunContext, SyncJob
from service.transport.offload import MappingPool
from service.upstream.urls import redact_url

log = logging.getLogger(__name__)

SUCCESS_LINE = "✅ Manual sync completed successfully"
FAILURE_PREFIX = "❌ Manual sync failed: "
FINISH_ATTEMPTS = 5
CLOSED_ELSEWHERE_MESSAGE = "the run was closed by another process"
OWNER_LOST_MESSAGE = (
    "Sync stopped: this process lost its hold on the ledger (its database session was cut), so another"
    " process may recover the run; nothing more of it is written"
)


@dataclass(frozen=True)
class StopReason:
    """Why the runner cancelled its own task; decides how the row is finished."""

    status: FinalStatus  # "cancelled" or "error"
    message: str | None = None
    cancelled_by: str | None = None


class SyncRunner:
    """Owns this process's run: the job's task, the supervisor that records its end, and a watchdog.

    Only the job's task is ever cancelled (cancel, stall, shutdown); the supervisor always gets to
    record the outcome, so a row is never left 'running' by a live process.
    """

    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
        http: aiohttp.ClientSession,
        job: SyncJob,
        source_url: str,
        sink: CatalogSink,
    ) -> None:
        self._ledger = ledger
        self._sink = sink
        self._settings = settings
        self._http = http
        self._job = job
        self._source_url = source_url
        self._mapping_pool = MappingPool(settings.mapping_workers)
        self._run_id: int | None = None
        self._job_task: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[RunRecord] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stop_reason: StopReason | None = None
        self._closing = False
        self._closed = asyncio.Event()  # set by close(): the watchdog ends after its current check

    @property
    def source_label(self) -> str:
        # Stored in the ledger and shown by the API: never with the credentials a URL may carry.
        if self._settings.source_url:
            return redact_url(self._source_url)
        return f"built-in demo upstream ({self._source_url})"

    async def trigger(
        self, triggered_by: str, *, via: StartedVia = "manual", dry_run: bool = False
    ) -> RunRecord:
        """Start a run in the background; RunAlreadyRunning (from the ledger) when one is in progress.

        A dry run reads and compares everything and writes nothing to the sink.
        """
        if self._closing:
            raise SyncFailed("the service is shutting down")
        run = await self._ledger.start_run(triggered_by, self.source_label, started_via=via, dry_run=dry_run)
        self._launch(run)
        return run

    async def tick(self, due_at: datetime, schedule: str, *, catch_up: bool = False) -> TickOutcome:
        """The schedule's tick due at ``due_at``: claimed in the ledger, and its run started if it won.

        Several processes may call this for one tick; the ledger gives it to one of them.
        """
        if self._closing:
            raise SyncFailed("the service is shutting down")
        outcome = await self._ledger.claim_tick(due_at, schedule, self.source_label, catch_up=catch_up)
        if isinstance(outcome, TickStarted):
            self._launch(outcome.run)
        return outcome

    def _launch(self, run: RunRecord) -> None:
        """The tasks of a run just recorded as started: the job, its supervisor and its watchdog."""
        # Every task of the run logs with its id.
        context = contextvars.copy_context()
        context.run(run_id_var.set, run.id)
        ctx = RunContext(
            run, self._ledger, self._settings, self._sink, self._http, self._source_url, self._mapping_pool
        )
        self._run_id, self._stop_reason = run.id, None
        self._job_task = asyncio.create_task(self._job(ctx), name=f"sync-job-{run.id}", context=context)
        self._supervisor = asyncio.create_task(
            self._supervise(run, self._job_task), name=f"sync-run-{run.id}", context=context
        )
        self._watchdog = asyncio.create_task(
            self._watch(run.id), name=f"sync-watchdog-{run.id}", context=context
        )
        # Logged from the caller's context, so the run id is passed explicitly.
        log.info(
            "sync run %s started by %s from %s",
            run.id,
            run.triggered_by,
            self.source_label,
            extra={"run_id": run.id},
        )

    async def wait(self) -> RunRecord:
        assert self._supervisor is not None, "wait() follows a trigger()"
        return await asyncio.shield(self._supervisor)

    async def cancel(self, requested_by: str) -> int:
        """Ask the running run (ours or another process's) to stop; raises NoRunRunning."""
        run_id = await self._ledger.request_cancel(requested_by)
        self._stop_job(run_id, StopReason("cancelled", cancelled_by=requested_by))
        return run_id

    def current_run_id(self) -> int | None:
        """The run this process is executing right now, if any."""
        if self._supervisor is None or self._supervisor.done():
            return None
        return self._run_id

    def _stop_job(self, run_id: int, reason: StopReason) -> None:
        job = self._job_task
        if run_id != self._run_id or job is None or job.done() or self._stop_reason is not None:
            return
        self._stop_reason = reason
        job.cancel()

    async def _watch(self, run_id: int) -> None:
        """Notice cancel requests from other processes and hung runs, within one interval."""
        while self.current_run_id() == run_id:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self._settings.watchdog_interval_s)
                return
            try:
                await self._check(run_id)
            except STORAGE_FAULTS as exc:  # a busy or failing database must not kill the watchdog
                log.warning("watchdog could not read run %s: %s", run_id, exc)

    async def _check(self, run_id: int) -> None:
        run = await self._ledger.get_run(run_id)
        if run is None or not run.is_running:
            # Finished by someone else (e.g. recovered as stalled by another process): stop writing.
            self._stop_job(run_id, StopReason("error", CLOSED_ELSEWHERE_MESSAGE))
        elif run.cancel_requested_by is not None:
            self._stop_job(run_id, StopReason("cancelled", cancelled_by=run.cancel_requested_by))
        elif self._ledger.is_stalled(run):
            self._stop_job(run_id, StopReason("error", self._ledger.stall_message()))
        elif await self._ledger.owner_lost():
            self._stop_job(run_id, StopReason("error", OWNER_LOST_MESSAGE))

    async def _supervise(self, run: RunRecord, job: asyncio.Task[None]) -> RunRecord:
        status: FinalStatus = "error"
        message: str | None = None
        cancelled_by: str | None = None
        try:
            # The job enforces the run time limit itself (settings.run_timeout_s) with a clear message.
            await job
            status = "success"
        except asyncio.CancelledError:
            if not job.cancelled():
                raise  # the supervisor itself was cancelled: not ours to swallow
            reason = self._stop_reason or StopReason("error", SHUTDOWN_MESSAGE)
            status, message, cancelled_by = reason.status, reason.message, reason.cancelled_by
        except TimeoutError as exc:
            message = f"Network timeout: {exc}" if str(exc) else "Network timeout"
        except SyncFailed as exc:
            message = str(exc)
        except RunNoLongerRunning:
            message = CLOSED_ELSEWHERE_MESSAGE
        except DatabaseFileGone as exc:
            # The ledger went with the file, so the outcome cannot be recorded (every write refuses):
            # it is logged and returned as it stands, with the counts the run started with.
            log.error("%s%s", FAILURE_PREFIX, exc)
            finished_at = utc_now()
            return replace(
                run,
                status="error",
                error_message=str(exc),
                finished_at=to_iso(finished_at),
                duration_s=seconds_between(from_iso(run.started_at), finished_at),
            )
        except STORAGE_FAULTS as exc:  # a full disk, a read-only file, a lock held past the busy timeout
            log.warning("sync run %s: database error: %s", run.id, exc)
            message = f"Database error: {exc}"
        except Exception as exc:
            log.exception("sync run %s crashed", run.id)
            message = f"Unexpected error: {type(exc).__name__}: {exc}"
        return await self._record_outcome(run, status, message, cancelled_by)

    async def _record_outcome(
        self, run: RunRecord, status: FinalStatus, message: str | None, cancelled_by: str | None
    ) -> RunRecord:
        if not self._closing:
            # Before the outcome is recorded: whoever waits for the run to end (to trigger the next one)
            # then finds the checkpoint done, instead of its commit sharing the disk with it. Not on
            # shutdown, which must not spend its stop timeout on it; closing the last connection
            # checkpoints anyway.
            await self._checkpoint(run.id)
        final = await self._finish_with_retries(run.id, status, message, cancelled_by)
        if final is None:
            current = await self._ledger.get_run(run.id)
            assert current is not None
            log.warning("sync run %s had already been finished as %s", run.id, current.status)
            return current
        # The contract's lines name a manual sync; a scheduled run and a dry run say what they were.
        kind = "Scheduled sync" if final.started_via == "schedule" else "Manual sync"
        if final.dry_run:
            kind = "Dry run"
        if final.status == "success":
            log.info(SUCCESS_LINE.replace("Manual sync", kind))
        elif final.status == "cancelled":
            log.info("⏹ %s cancelled by %s", kind, final.cancelled_by)
        else:
            log.error("%s%s", FAILURE_PREFIX.replace("Manual sync", kind), final.error_message)
        await apply_retention(self._ledger, self._settings)
        return final

    async def _checkpoint(self, run_id: int) -> None:
        """Fold the run's WAL pages into the database now, rather than in the next trigger's commit."""
        try:
            await self._ledger.checkpoint()
        except STORAGE_FAULTS as exc:  # only a missed optimisation: SQLite checkpoints on its own later
            log.warning("could not checkpoint the database after run %s: %s", run_id, exc)

    async def _finish_with_retries(
        self, run_id: int, status: FinalStatus, message: str | None, cancelled_by: str | None
    ) -> RunRecord | None:
        """Record the outcome; a locked or briefly failing database gets a few tries before we give up.

        Giving up is safe: the row stays 'running' with a stale heartbeat, and the stall rule frees it.
        """
        for attempt in range(FINISH_ATTEMPTS):
            try:
                return await self._ledger.finish_run(
                    run_id,
                    status,
                    error_message=message if status == "error" else None,
                    cancelled_by=cancelled_by if status == "cancelled" else None,
                )
            except TRANSIENT_STORAGE_FAULTS as exc:
                log.warning("could not record the end of run %s (attempt %s): %s", run_id, attempt + 1, exc)
                await asyncio.sleep(0.2 * 2**attempt)
        raise SyncFailed(f"could not record the end of run {run_id}")

    async def close(self) -> None:
        """Shutdown: stop the running sync, record it as interrupted by shutdown, within the timeout."""
        self._closing = True
        if self._run_id is not None:
            self._stop_job(self._run_id, StopReason("error", SHUTDOWN_MESSAGE))
        if self._watchdog is not None:
            # Told to end rather than cancelled: a cancel landing inside a query can leave a pooled
            # PostgreSQL connection mid-protocol.
            self._closed.set()
            await self._watchdog
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._supervisor), self._settings.shutdown_timeout_s)
            except TimeoutError:
                log.error("sync run %s did not stop within the shutdown timeout", self._run_id)
        self._mapping_pool.close()
