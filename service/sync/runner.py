"""The one background sync task of this process: start it, watch it, stop it, record how it ended.

The ledger row is the truth; this object only holds the asyncio task so it can be cancelled and awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass

import aiohttp

from service.ledger.runs import (
    SHUTDOWN_MESSAGE,
    Ledger,
    RunNoLongerRunning,
    RunRecord,
)
from service.logs import run_id_var
from service.settings import Settings
from service.sync.job import RunContext, SyncFailed, SyncJob

log = logging.getLogger(__name__)

SUCCESS_LINE = "✅ Manual sync completed successfully"
FAILURE_PREFIX = "❌ Manual sync failed: "
FINISH_ATTEMPTS = 5


@dataclass(frozen=True)
class StopReason:
    """Why the runner cancelled its own task; decides how the row is finished."""

    status: str  # "cancelled" or "error"
    message: str | None = None
    cancelled_by: str | None = None


class SyncRunner:
    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
        http: aiohttp.ClientSession,
        job: SyncJob,
        source_url: str,
    ) -> None:
        self._ledger = ledger
        self._settings = settings
        self._http = http
        self._job = job
        self._source_url = source_url
        self._task: asyncio.Task[RunRecord] | None = None
        self._run_id: int | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stop_reason: StopReason | None = None
        self._closing = False

    @property
    def source_label(self) -> str:
        if self._settings.source_url:
            return self._source_url
        return f"built-in demo upstream ({self._source_url})"

    async def trigger(self, triggered_by: str) -> RunRecord:
        """Start a run in the background; RunAlreadyRunning (from the ledger) when one is in progress."""
        if self._closing:
            raise SyncFailed("the service is shutting down")
        run = await self._ledger.start_run(triggered_by, self.source_label)
        self._stop_reason = None
        self._run_id = run.id
        self._task = asyncio.create_task(self._execute(run), name=f"sync-run-{run.id}")
        self._watchdog = asyncio.create_task(self._watch(run.id), name=f"sync-watchdog-{run.id}")
        return run

    async def run_in_foreground(self, triggered_by: str) -> RunRecord:
        """The CLI's ``sync``: same ledger rules, but the caller waits for the outcome."""
        await self.trigger(triggered_by)
        return await self.wait()

    async def wait(self) -> RunRecord:
        assert self._task is not None
        return await asyncio.shield(self._task)

    async def cancel(self, requested_by: str) -> int:
        """Ask the running run (ours or another process's) to stop; raises NoRunRunning."""
        run_id = await self._ledger.request_cancel(requested_by)
        self._stop_task(run_id, StopReason("cancelled", cancelled_by=requested_by))
        return run_id

    def current_run_id(self) -> int | None:
        if self._task is None or self._task.done():
            return None
        return self._run_id

    def _stop_task(self, run_id: int, reason: StopReason) -> None:
        if self.current_run_id() == run_id and self._task is not None and self._stop_reason is None:
            self._stop_reason = reason
            self._task.cancel()

    async def _watch(self, run_id: int) -> None:
        """Notice cancel requests from other processes and hung runs, within one interval."""
        while self.current_run_id() == run_id:
            await asyncio.sleep(self._settings.watchdog_interval_s)
            try:
                await self._check(run_id)
            except sqlite3.Error as exc:  # a busy or failing database must not kill the watchdog
                log.warning("watchdog could not read run %s: %s", run_id, exc)

    async def _check(self, run_id: int) -> None:
        run = await self._ledger.get_run(run_id)
        if run is None or not run.is_running:
            # Finished by someone else (e.g. recovered as stalled by another process): stop writing.
            self._stop_task(run_id, StopReason("error", "the run was closed by another process"))
        elif run.cancel_requested_by is not None:
            self._stop_task(run_id, StopReason("cancelled", cancelled_by=run.cancel_requested_by))
        elif self._ledger.is_stalled(run):
            self._stop_task(run_id, StopReason("error", self._ledger.stall_message()))

    async def _execute(self, run: RunRecord) -> RunRecord:
        run_id_var.set(run.id)
        ctx = RunContext(run, self._ledger, self._settings, self._http, self._source_url)
        log.info("sync run %s started by %s from %s", run.id, run.triggered_by, self.source_label)
        status: str
        message: str | None = None
        cancelled_by: str | None = None
        try:
            async with asyncio.timeout(self._settings.run_timeout_s) as deadline:
                await self._job(ctx)
            status = "success"
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            reason = self._stop_reason or StopReason("error", SHUTDOWN_MESSAGE)
            status, message, cancelled_by = reason.status, reason.message, reason.cancelled_by
        except TimeoutError as exc:
            status = "error"
            if deadline.expired():
                message = f"Sync exceeded the run time limit of {self._settings.run_timeout_s:g} s"
            else:
                message = f"Network timeout: {exc}" if str(exc) else "Network timeout"
        except SyncFailed as exc:
            status, message = "error", str(exc)
        except RunNoLongerRunning:
            status, message = "error", "the run was closed by another process"
        except Exception as exc:
            log.exception("sync run %s crashed", run.id)
            status, message = "error", f"Unexpected error: {type(exc).__name__}: {exc}"
        return await self._record_outcome(run, status, message, cancelled_by)

    async def _record_outcome(
        self, run: RunRecord, status: str, message: str | None, cancelled_by: str | None
    ) -> RunRecord:
        finished = await self._finish_with_retries(run.id, status, message, cancelled_by)
        final = await self._ledger.get_run(run.id)
        assert final is not None
        if not finished:
            log.warning("sync run %s had already been finished as %s", run.id, final.status)
        elif final.status == "success":
            log.info(SUCCESS_LINE)
        elif final.status == "cancelled":
            log.info("⏹ Manual sync cancelled by %s", final.cancelled_by)
        else:
            log.error("%s%s", FAILURE_PREFIX, final.error_message)
        return final

    async def _finish_with_retries(
        self, run_id: int, status: str, message: str | None, cancelled_by: str | None
    ) -> bool:
        """Record the outcome; a locked or briefly failing database gets a few tries before we give up.

        Giving up is safe: the row stays 'running' with a stale heartbeat, and the stall rule frees it.
        """
        for attempt in range(FINISH_ATTEMPTS):
            try:
                if status == "success":
                    return await self._ledger.finish_run(run_id, "success")
                if status == "cancelled":
                    return await self._ledger.finish_run(run_id, "cancelled", cancelled_by=cancelled_by)
                return await self._ledger.finish_run(run_id, "error", error_message=message)
            except sqlite3.OperationalError as exc:
                log.warning("could not record the end of run %s (attempt %s): %s", run_id, attempt + 1, exc)
                await asyncio.sleep(0.2 * 2**attempt)
        raise SyncFailed(f"could not record the end of run {run_id}")

    async def close(self) -> None:
        """Shutdown: stop the running sync, record it as interrupted by shutdown, within the timeout."""
        self._closing = True
        run_id = self.current_run_id()
        if run_id is not None:
            self._stop_task(run_id, StopReason("error", SHUTDOWN_MESSAGE))
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._settings.shutdown_timeout_s)
            except TimeoutError:
                log.error("sync run %s did not stop within the shutdown timeout", self._run_id)
