"""The status answer: one builder (from the documented model) and the cache that spares rebuilding it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.api.schemas import (
    Progress,
    ScheduleData,
    SinkData,
    Stats,
    StatusData,
    StatusResponse,
    stats_of,
)
from service.catalog.sink import SinkInfo
from service.domain.schedule import CronSchedule
from service.ledger.records import RunRecord
from service.support.timeutil import to_iso

_IDLE = StatusData(
    isRunning=False, lastRun=None, lastStatus="idle", lastError=None, lastDuration=None, stats=Stats()
)


def sink_data(sink: SinkInfo) -> SinkData:
    return SinkData(kind=sink.kind, target=sink.target)


@dataclass(frozen=True)
class ServiceFacts:
    """What the status answer says besides the latest run: where products go, and when runs start."""

    sink: SinkInfo | None = None
    schedule: CronSchedule | None = None
    next_run_at: datetime | None = None


def status_response(run: RunRecord | None, facts: ServiceFacts = ServiceFacts()) -> StatusResponse:
    """What ``GET /admin/sync/status`` answers for the latest run (None: no run yet)."""
    where = sink_data(facts.sink) if facts.sink is not None else None
    next_run_at = to_iso(facts.next_run_at) if facts.next_run_at is not None else None
    schedule = (
        ScheduleData(expression=facts.schedule.expression, timezone=facts.schedule.timezone)
        if facts.schedule is not None
        else None
    )
    if run is None:
        update = {"sink": where, "nextRunAt": next_run_at, "schedule": schedule}
        return StatusResponse(data=_IDLE.model_copy(update=update))
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
            startedVia=run.started_via,
            dryRun=bool(run.dry_run),
            nextRunAt=next_run_at,
            schedule=schedule,
        )
    )


def status_body(run: RunRecord | None, facts: ServiceFacts = ServiceFacts()) -> bytes:
    return status_response(run, facts).model_dump_json().encode()


class StatusBodyCache:
    """The last status body, answered again while the latest run reads the same.

    Dashboards poll status many times a second while a sync commits a few batches a second, so most
    polls find the record they found before: comparing it (equal values, whichever object) is far
    cheaper than building and dumping the models. Any changed field makes a new body.
    """

    def __init__(self, sink: SinkInfo | None = None, schedule: CronSchedule | None = None) -> None:
        self._sink = sink
        self._schedule = schedule
        self._run: RunRecord | None = None
        self._next_run_at: datetime | None = None
        self._body = status_body(None, ServiceFacts(sink, schedule))

    def body(self, run: RunRecord | None, next_run_at: datetime | None = None) -> bytes:
        if (run is not self._run and run != self._run) or next_run_at != self._next_run_at:
            self._run, self._next_run_at = run, next_run_at
            self._body = status_body(run, ServiceFacts(self._sink, self._schedule, next_run_at))
        return self._body
