"""The status answer: one builder (from the documented model) and the cache that spares rebuilding it."""

from __future__ import annotations

from service.api.schemas import Progress, SinkData, Stats, StatusData, StatusResponse, stats_of
from service.catalog.sink import SinkInfo
from service.ledger.records import RunRecord

_IDLE = StatusData(
    isRunning=False, lastRun=None, lastStatus="idle", lastError=None, lastDuration=None, stats=Stats()
)


def sink_data(sink: SinkInfo) -> SinkData:
    return SinkData(kind=sink.kind, target=sink.target)


def status_response(run: RunRecord | None, sink: SinkInfo | None = None) -> StatusResponse:
    """What ``GET /admin/sync/status`` answers for the latest run (None: no run yet)."""
    where = sink_data(sink) if sink is not None else None
    if run is None:
        return StatusResponse(data=_IDLE.model_copy(update={"sink": where}))
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
            sink=where,
        )
    )


def status_body(run: RunRecord | None, sink: SinkInfo | None = None) -> bytes:
    return status_response(run, sink).model_dump_json().encode()


class StatusBodyCache:
    """The last status body, answered again while the latest run reads the same.

    Dashboards poll status many times a second while a sync commits a few batches a second, so most
    polls find the record they found before: comparing it (equal values, whichever object) is far
    cheaper than building and dumping the models. Any changed field makes a new body.
    """

    def __init__(self, sink: SinkInfo | None = None) -> None:
        self._sink = sink
        self._run: RunRecord | None = None
        self._body = status_body(None, sink)

    def body(self, run: RunRecord | None) -> bytes:
        if run is not self._run and run != self._run:
            self._run, self._body = run, status_body(run, self._sink)
        return self._body
