"""The ``product-sync runs`` table: one line per run, columns sized to their content."""

from __future__ import annotations

from collections.abc import Sequence

from service.ledger.records import RunRecord

MESSAGE_WIDTH = 60
HEADERS = (
    "ID",
    "STATUS",
    "STARTED",
    "DURATION",
    "BY",
    "CREATED",
    "UPDATED",
    "UNCHANGED",
    "ERRORS",
    "MESSAGE",
)
_NUMERIC = frozenset({"ID", "DURATION", "CREATED", "UPDATED", "UNCHANGED", "ERRORS"})


def _message(run: RunRecord) -> str:
    if run.error_message:
        text = run.error_message
    elif run.cancelled_by:
        text = f"cancelled by {run.cancelled_by}"
    elif run.is_running:
        of_total = f"/{run.total}" if run.total is not None else ""
        text = f"{run.processed}{of_total} processed"
    else:
        text = ""
    notes = [
        *(["dry run (nothing written)"] if run.dry_run else []),
        *([f"removed {run.removed}"] if run.removed else []),
        *([f"restored {run.restored}"] if run.restored else []),
    ]
    text = "; ".join([*notes, text] if text else notes)
    return text if len(text) <= MESSAGE_WIDTH else text[: MESSAGE_WIDTH - 1] + "…"


def _row(run: RunRecord) -> tuple[str, ...]:
    duration = f"{run.duration_s:.2f}" if run.duration_s is not None else "-"
    return (
        str(run.id),
        run.status,
        run.started_at,
        duration,
        run.triggered_by,
        str(run.created),
        str(run.updated),
        str(run.unchanged),
        str(run.errors),
        _message(run),
    )


def format_runs_table(runs: Sequence[RunRecord]) -> str:
    if not runs:
        return "no runs recorded"
    rows = [HEADERS, *(_row(run) for run in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if header in _NUMERIC else cell.ljust(width)
            for cell, width, header in zip(row, widths, HEADERS, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
