"""What the ledger hands out: runs and item errors as records, and its named errors."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from service.database.access import Row

RunStatus = Literal["running", "success", "error", "cancelled"]
FinalStatus = Literal["success", "error", "cancelled"]
# How a run was started: an admin over HTTP, the schedule, or the command line.
StartedVia = Literal["manual", "schedule", "cli"]

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
    """One row of ``runs``; every field is the column of the same name (``RUN_COLUMNS`` lists them)."""

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
    started_via: StartedVia
    removed: int
    restored: int
    dry_run: bool

    @classmethod
    def from_row(cls, row: Row) -> RunRecord:
        """By column name: a query that selects a column this record lacks, or lacks one, fails here.

        The runs queries select ``RUN_COLUMNS``, whose names are the fields in order: that is checked by
        name on every row, then the values are taken in order, which status polls do many times a second.
        """
        names = tuple(row.keys())
        if names == _RUN_FIELDS:
            return cls(*row)
        return cls(**{name: row[name] for name in names})

    @property
    def is_running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True, slots=True)
class RunChangeRecord:
    id: int
    external_id: str
    handle: str | None
    kind: str
    action: str | None
    fields: str | None

    @classmethod
    def from_row(cls, row: Row) -> RunChangeRecord:
        return cls(**{name: row[name] for name in row.keys()})  # noqa: SIM118


@dataclass(frozen=True, slots=True)
class TickStarted:
    """The tick was this process's to claim, and it started ``run``."""

    run: RunRecord


@dataclass(frozen=True, slots=True)
class TickSkipped:
    """The tick was this process's to claim, and found ``running`` in progress: recorded, not an error."""

    running: RunRecord


@dataclass(frozen=True, slots=True)
class TickTaken:
    """Another process claimed the tick first (it started or skipped the run, not us)."""


TickOutcome = TickStarted | TickSkipped | TickTaken


_RUN_FIELDS = tuple(field.name for field in fields(RunRecord))
# The runs queries select exactly the record's fields, so a new column is a migration and a field here.
RUN_COLUMNS = ", ".join(_RUN_FIELDS)


@dataclass(frozen=True, slots=True)
class RunErrorRecord:
    id: int
    position: int
    external_id: str | None
    reason: str
    recorded_at: str

    @classmethod
    def from_row(cls, row: Row) -> RunErrorRecord:
        return cls(**{name: row[name] for name in row.keys()})  # noqa: SIM118
