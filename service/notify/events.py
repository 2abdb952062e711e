"""The event a webhook receives when a run ends: built from the run's final row, so every attempt of a
delivery sends the same bytes, whichever process makes it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from service.api.schemas import StartedVia, Stats, stats_of
from service.ledger.records import RunRecord

RUN_FINISHED: Literal["run.finished"] = "run.finished"


class RunFinishedEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event: Literal["run.finished"] = RUN_FINISHED
    runId: int
    outcome: Literal["success", "error", "cancelled"]
    startedVia: StartedVia
    triggeredBy: str
    startedAt: str
    finishedAt: str
    duration: float | None
    stats: Stats
    error: str | None
    cancelledBy: str | None
    source: str | None
    dryRun: bool  # a dry run wrote nothing: its stats are what a real run would have done


def run_finished_body(run: RunRecord) -> bytes:
    assert run.status != "running" and run.finished_at is not None, "only a finished run has an outcome"
    event = RunFinishedEvent(
        runId=run.id,
        outcome=run.status,
        startedVia=run.started_via,
        triggeredBy=run.triggered_by,
        startedAt=run.started_at,
        finishedAt=run.finished_at,
        duration=None if run.duration_s is None else round(run.duration_s, 2),
        stats=stats_of(run),
        error=run.error_message,
        cancelledBy=run.cancelled_by,
        source=run.source,
        dryRun=bool(run.dry_run),
    )
    return event.model_dump_json().encode()
