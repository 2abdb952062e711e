"""Response bodies as pydantic models: handlers build these, and the OpenAPI document is generated from them.

Field names are the contract's (camelCase); extra fields are additions, never renames.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from service.ledger.records import RunChangeRecord, RunErrorRecord, RunRecord
from service.notify.outbox import DeliveryRecord

LastStatus = Literal["idle", "running", "success", "error", "cancelled"]
StartedVia = Literal["manual", "schedule", "cli"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorResponse(_Model):
    status: Literal["error"] = "error"
    message: str


class Stats(_Model):
    created: int = 0
    updated: int = 0
    errors: int = 0
    unchanged: int = 0
    categoriesCreated: int = 0
    removed: int = 0  # products the feed no longer listed, archived or deleted (SYNC_REMOVED_PRODUCTS)
    restored: int = 0  # archived products back in the feed (also counted in updated)


class Progress(_Model):
    processed: int
    total: int | None


class SinkData(_Model):
    kind: Literal["sqlite", "postgres", "medusa"]
    target: str


class ScheduleData(_Model):
    expression: str
    timezone: str


class StatusData(_Model):
    isRunning: bool
    lastRun: str | None
    lastStatus: LastStatus
    lastError: str | None
    lastDuration: float | None
    stats: Stats
    runId: int | None = None
    progress: Progress | None = None
    triggeredBy: str | None = None
    finishedAt: str | None = None
    cancelledBy: str | None = None
    sink: SinkData | None = None
    startedVia: StartedVia | None = None
    dryRun: bool = False  # the newest run was a dry run: its stats are what a real run would do
    # The schedule's next due time (null when there is no schedule), and the schedule itself.
    nextRunAt: str | None = None
    schedule: ScheduleData | None = None


class StatusResponse(_Model):
    status: Literal["success"] = "success"
    data: StatusData


class TriggerRequest(_Model):
    """The trigger's optional body. Unknown keys are refused: a misspelt dryRun must not start a real
    run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dryRun: StrictBool = False


class TriggerData(_Model):
    startedAt: str
    checkStatusAt: str = "/admin/sync/status"
    runId: int
    dryRun: bool = False


class TriggerResponse(_Model):
    status: Literal["success"] = "success"
    message: str = "Sync job triggered successfully"
    data: TriggerData


class AlreadyRunningData(_Model):
    startedAt: str
    runId: int


class AlreadyRunningResponse(_Model):
    status: Literal["error"] = "error"
    message: str = "Sync job is already running"
    data: AlreadyRunningData


class CancelData(_Model):
    runId: int


class CancelResponse(_Model):
    status: Literal["success"] = "success"
    message: str = "Sync cancellation requested"
    data: CancelData


class Run(_Model):
    id: int
    status: Literal["running", "success", "error", "cancelled"]
    startedAt: str
    finishedAt: str | None
    duration: float | None
    error: str | None
    triggeredBy: str
    cancelledBy: str | None
    stats: Stats
    progress: Progress
    source: str | None = None
    startedVia: StartedVia = "manual"
    dryRun: bool = False


class RunList(_Model):
    runs: list[Run]
    nextCursor: str | None


class RunListResponse(_Model):
    status: Literal["success"] = "success"
    data: RunList


class RunItemError(_Model):
    position: int
    externalId: str | None
    reason: str
    recordedAt: str


class WebhookDelivery(_Model):
    url: str  # with user-info and query values redacted
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    lastStatus: int | None
    lastError: str | None
    lastAttemptAt: str | None
    nextAttemptAt: str | None  # null once delivered or given up
    deliveredAt: str | None


class RunChange(_Model):
    externalId: str
    handle: str | None
    kind: Literal["create", "update", "remove", "restore"]
    action: Literal["archive", "delete"] | None = None  # how a product was removed
    fields: list[str] | None = None  # the fields an update changes


class RunDetail(_Model):
    run: Run
    errors: list[RunItemError]
    nextErrorsCursor: str | None
    webhooks: list[WebhookDelivery] = []
    # Products the run removed or restored (a dry run: every change it would make).
    changes: list[RunChange] = []
    nextChangesCursor: str | None = None


class RunDetailResponse(_Model):
    status: Literal["success"] = "success"
    data: RunDetail


class SessionRequest(_Model):
    token: str = Field(min_length=1, max_length=4096)


class SessionData(_Model):
    tokenName: str
    expiresAt: str


class SessionResponse(_Model):
    status: Literal["success"] = "success"
    data: SessionData


class MessageResponse(_Model):
    status: Literal["success"] = "success"
    message: str


class HealthResponse(_Model):
    status: Literal["ok"] = "ok"


class ReadyResponse(_Model):
    status: Literal["ready"] = "ready"
    schemaVersion: int
    sink: SinkData | None = None


def stats_of(run: RunRecord) -> Stats:
    return Stats(
        created=run.created,
        updated=run.updated,
        errors=run.errors,
        unchanged=run.unchanged,
        categoriesCreated=run.categories_created,
        removed=run.removed,
        restored=run.restored,
    )


def run_model(run: RunRecord) -> Run:
    return Run(
        id=run.id,
        status=run.status,
        startedAt=run.started_at,
        finishedAt=run.finished_at,
        duration=run.duration_s,
        error=run.error_message,
        triggeredBy=run.triggered_by,
        cancelledBy=run.cancelled_by,
        stats=stats_of(run),
        progress=Progress(processed=run.processed, total=run.total),
        source=run.source,
        startedVia=run.started_via,
        dryRun=bool(run.dry_run),
    )


def delivery_model(record: DeliveryRecord) -> WebhookDelivery:
    return WebhookDelivery(
        url=record.label,
        status=record.status,
        attempts=record.attempts,
        lastStatus=record.last_status,
        lastError=record.last_error,
        lastAttemptAt=record.last_attempt_at,
        nextAttemptAt=record.next_attempt_at if record.status == "pending" else None,
        deliveredAt=record.delivered_at,
    )


def change_item(record: RunChangeRecord) -> RunChange:
    return RunChange.model_validate(
        {
            "externalId": record.external_id,
            "handle": record.handle,
            "kind": record.kind,
            "action": record.action,
            "fields": json.loads(record.fields) if record.fields is not None else None,
        }
    )


def error_item(record: RunErrorRecord) -> RunItemError:
    return RunItemError(
        position=record.position,
        externalId=record.external_id,
        reason=record.reason,
        recordedAt=record.recorded_at,
    )
