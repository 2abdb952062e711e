"""The status answer: one builder (from the documented model) and the cache that spares rebuilding it."""

from __future__ import annotations

from service.api.schemas import Progress, Stats, StatusData, StatusResponse, stats_of
from service.ledger.records import RunRecord

_IDLE = StatusData(
    isRunning=False, lastRun=None, lastStatus="idle", lastError=None, lastDuration=None, stats=Stats()
)


def status_response(run: RunRecord | None) -> StatusResponse:
    """What ``GET /admin/sync/status`` answers for the latest run (None: no run yet)."""
    if run is None:
        return StatusResponse(data=_IDLE)
    return StatusResponse(
        data=StatusData(
            isRunning=run.is_running,
            lastRun=run.started_at,
            lastStatus=run.status,
            lastError=run.error_message,
            lastDuration=None if run.duration_s is None else round(run.duration_s, 2),
            stats=stats_of(run),
            runId=run.id,
            progress=Progress(processed=run.processed, total=run.total),
            triggeredBy=run.triggered_by,
            finishedAt=run.finished_at,
            cancelledBy=run.cancelled_by,
        )
    )


def status_body(run: RunRecord | None) -> bytes:
    return status_response(run).model_dump_json().encode()


class StatusBodyCache:
    """The last status body, answered again while the latest run reads the same.

    Dashboards poll status many times a second while a sync commits a few batches a second, so most
    polls find the record they found before: comparing it (equal values, whichever object) is far
    cheaper than building and dumping the models. Any changed field makes a new body.
    """

    def __init__(self) -> None:
        self._run: RunRecord | None = None
        self._body = status_body(None)

    def body(self, run: RunRecord | None) -> bytes:
        if run is not self._run and run != self._run:
            self._run, self._body = run, status_body(run)
        return self._body
