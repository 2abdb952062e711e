"""What /metrics shows of the ledger: totals per outcome, the running run, the last finished one.

Read at scrape time, so the figures are right whichever process (service, second replica, ``product-sync
sync``) did the work, and survive restarts. Totals come from ``run_totals`` (migration 0004), kept by a
trigger as runs finish, so a scrape is a few index lookups however long the ledger is, and pruning old
runs never lowers a counter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.database.access import Row


@dataclass(frozen=True)
class OutcomeTotals:
    runs: int
    created: int
    updated: int
    unchanged: int
    errors: int
    categories_created: int
    duration_s: float


@dataclass(frozen=True)
class CurrentRun:
    processed: int
    total: int | None
    started_at: str


@dataclass(frozen=True)
class LedgerSnapshot:
    totals: Mapping[str, OutcomeTotals]  # finished runs by outcome, plus "running": its committed batches
    running: CurrentRun | None
    last_finished_status: str | None
    last_finished_at: str | None
    last_duration_s: float | None
    last_success_at: str | None


def read_snapshot(rows: Sequence[Row]) -> LedgerSnapshot:
    """The snapshot from the rows of ``queries.LEDGER_METRICS`` (each tagged by ``kind``)."""
    totals: dict[str, OutcomeTotals] = {}
    running: CurrentRun | None = None
    last: Row | None = None
    last_success_at: str | None = None
    for row in rows:
        kind = row["kind"]
        if kind == "total":
            totals[row["status"]] = OutcomeTotals(
                runs=int(row["runs"]),
                created=int(row["created"]),
                updated=int(row["updated"]),
                unchanged=int(row["unchanged"]),
                errors=int(row["errors"]),
                categories_created=int(row["categories_created"]),
                duration_s=float(row["duration_s"]),
            )
        elif kind == "running":
            running = CurrentRun(int(row["processed"]), row["total"], row["started_at"])
            totals["running"] = OutcomeTotals(
                runs=1,
                created=int(row["created"]),
                updated=int(row["updated"]),
                unchanged=int(row["unchanged"]),
                errors=int(row["errors"]),
                categories_created=int(row["categories_created"]),
                duration_s=0.0,
            )
        elif kind == "last_finished":
            last = row
        elif kind == "last_success":
            last_success_at = row["finished_at"]
    return LedgerSnapshot(
        totals=totals,
        running=running,
        last_finished_status=last["status"] if last else None,
        last_finished_at=last["finished_at"] if last else None,
        last_duration_s=last["duration_s"] if last else None,
        last_success_at=last_success_at,
    )
