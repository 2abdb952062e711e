"""How ``product-sync sync`` shows a run: a tqdm bar on a terminal (rate, ETA), plain lines otherwise."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import NoReturn, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from service.ledger.records import RunRecord

BAR_WIDTH = 20
# Most telling first, as tqdm cuts the line at the terminal's width: how far, how fast, how long still
# (or, without a total, how many and how fast), then the counts.
_WITH_TOTAL = (
    f"[{{bar:{BAR_WIDTH}}}] {{percentage:3.0f}}% {{n}}/{{total}} processed, {{rate_fmt}}, ETA {{remaining}}"
    " | {desc}"
)
_WITHOUT_TOTAL = "{n} processed, {rate_fmt}, {elapsed} elapsed | {desc}"


def counts_text(run: RunRecord) -> str:
    return (
        f"created {run.created}, updated {run.updated}, unchanged {run.unchanged}, errors {run.errors}, "
        f"categories created {run.categories_created}, removed {run.removed}, restored {run.restored}"
    )


def progress_text(run: RunRecord) -> str:
    of_total = f"/{run.total}" if run.total is not None else ""
    return f"{run.processed}{of_total} processed"


def summary_lines(run: RunRecord) -> list[str]:
    duration = f"{run.duration_s:.2f} s" if run.duration_s is not None else "? s"
    by = f" by {run.cancelled_by}" if run.cancelled_by else ""
    what = "dry run" if run.dry_run else "run"
    lines = [f"{what} {run.id} {run.status} in {duration}{by}: {counts_text(run)}"]
    if run.dry_run:
        lines.append("  nothing was written; the counts are what a sync would do")
    if run.error_message:
        lines.append(f"  error: {run.error_message}")
    return lines


@contextlib.contextmanager
def logs_above_the_bar() -> Iterator[None]:
    """While a bar is drawn, log lines on the console are written above it instead of into it."""
    with logging_redirect_tqdm():
        yield


class ProgressReporter:
    """Fed the run's ledger row every poll; draws only when something changed."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self._stream = stream
        self._interactive = interactive
        self._last: tuple[int, int | None] | None = None
        self._bar: tqdm[NoReturn] | None = None

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
        counts = f"created {run.created} updated {run.updated} errors {run.errors}"
        bar_format = _WITH_TOTAL if run.total else _WITHOUT_TOTAL
        if self._bar is None:
            size = shutil.get_terminal_size()  # (80, 24) where the terminal reports none
            # tqdm measures the rate (and so the ETA) between updates, each poll being one: it starts at
            # what the run had already done, so the first rate is not that divided by no time at all.
            self._bar = tqdm(
                desc=counts,
                total=run.total,
                initial=run.processed,
                bar_format=bar_format,
                file=self._stream,
                unit=" items",
                ascii="-#",
                leave=False,
                mininterval=0,
                smoothing=0.3,
                # A terminal that reports no size (a new pty) still gets a bar: tqdm would draw nothing.
                ncols=size.columns,
                nrows=size.lines,
            )
            return
        bar = self._bar
        bar.total, bar.bar_format = run.total, bar_format
        bar.set_description_str(counts, refresh=False)
        bar.update(run.processed - bar.n)

    def finish(self, run: RunRecord) -> None:
        if self._bar is not None:
            self._bar.close()  # leave=False: the bar's line is cleared for the summary
            self._bar = None
        for line in summary_lines(run):
            print(line, file=self._stream, flush=True)
