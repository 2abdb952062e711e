"""How ``product-sync sync`` shows a run: a redrawn bar on a terminal, plain lines otherwise."""

from __future__ import annotations

from typing import TextIO

from service.ledger.records import RunRecord

BAR_WIDTH = 30


def counts_text(run: RunRecord) -> str:
    return (
        f"created {run.created}, updated {run.updated}, unchanged {run.unchanged}, errors {run.errors}, "
        f"categories created {run.categories_created}"
    )


def progress_text(run: RunRecord) -> str:
    of_total = f"/{run.total}" if run.total is not None else ""
    return f"{run.processed}{of_total} processed"


def summary_lines(run: RunRecord) -> list[str]:
    duration = f"{run.duration_s:.2f} s" if run.duration_s is not None else "? s"
    by = f" by {run.cancelled_by}" if run.cancelled_by else ""
    lines = [f"run {run.id} {run.status} in {duration}{by}: {counts_text(run)}"]
    if run.error_message:
        lines.append(f"  error: {run.error_message}")
    return lines


class ProgressReporter:
    """Fed the run's ledger row every poll; draws only when something changed."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self._stream = stream
        self._interactive = interactive
        self._last: tuple[int, int | None] | None = None
        self._drawn_width = 0

    def update(self, run: RunRecord) -> None:
        state = (run.processed, run.total)
        if state == self._last:
            return
        self._last = state
        if self._interactive:
            self._draw_bar(run)
        else:
            print(f"run {run.id}: {progress_text(run)} ({counts_text(run)})", file=self._stream, flush=True)

    def _draw_bar(self, run: RunRecord) -> None:
        if run.total:
            done = min(run.processed / run.total, 1.0)
            filled = int(done * BAR_WIDTH)
            bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done:4.0%}"
        else:
            bar = "[" + "-" * BAR_WIDTH + "]  ..."
        line = f"{bar} {progress_text(run)} | created {run.created} updated {run.updated} errors {run.errors}"
        padding = " " * max(self._drawn_width - len(line), 0)
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()
        self._drawn_width = len(line)

    def finish(self, run: RunRecord) -> None:
        if self._interactive and self._drawn_width:
            self._stream.write("\r" + " " * self._drawn_width + "\r")
        for line in summary_lines(run):
            print(line, file=self._stream, flush=True)
