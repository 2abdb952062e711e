"""Checkpoints of SQLite's write-ahead log in the background, while the write connection goes on.

SQLite copies the log back into the database file (a checkpoint, with two fsyncs) inside the commit
that takes the log past its auto-checkpoint size. During a large sync that was half of what a batch's
commit cost, and the next batch waited for it. Here a connection of its own copies what was committed,
in a thread, shortly after commits, while the writer goes on with the next batch; the writer's own
auto-checkpoint then finds little left to copy.

The writer's auto-checkpoint still runs, and it is what keeps the log's size bounded: the log starts
over only after a checkpoint that left nothing to copy, which one racing a busy writer rarely is. So this
one pauses between its passes, and the writer's checkpoints run in those pauses (one that finds this one
running skips its turn, and the log grows meanwhile); when a pass finds the log past the writer's
checkpoint size, this one stands aside longer, until the writer has started the log over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)

# Rows a pass waits for (written since the last one, by any number of commits): a large sync's batch
# brings that many at once, while the small commits of triggers and heartbeats, a few rows each, are left
# to the writer's own checkpoints as before (a pass costs two fsyncs, however little it copies).
PASS_AFTER_ROWS = 1000
# The pause after each background pass: long enough for a few of a large sync's commits, one of which
# then runs the writer's own checkpoint, and for pages written by several commits (the unique indexes'
# leaves) to be copied once rather than after each commit.
PAUSE_S = 0.2
# The pause after a pass that found the log past the writer's auto-checkpoint size: the writer's
# checkpoints were missing their turns (a slow disk, or this thread starved of the CPU), and the next
# one must not.
STAND_ASIDE_S = 1.0


class BackgroundCheckpoints:
    """Runs ``checkpoint`` (blocking, PASSIVE: it never waits for readers or the writer; it returns
    the pages the log holds) in a thread once commits have written ``pass_after_rows`` rows, at most
    once per pause. ``writer_checkpoint_pages`` is the writer's auto-checkpoint size. :meth:`start` in
    the owner's open, :meth:`close` in its close.
    """

    def __init__(
        self,
        checkpoint: Callable[[], int],
        writer_checkpoint_pages: int,
        pass_after_rows: int = PASS_AFTER_ROWS,
        pause_s: float = PAUSE_S,
    ) -> None:
        self._checkpoint = checkpoint
        self._writer_checkpoint_pages = writer_checkpoint_pages
        self._pass_after_rows = pass_after_rows
        self._pause_s = pause_s
        self._rows_when_pass_asked = 0
        self._committed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sqlite-wal-checkpoints")

    def committed(self, rows_changed: int) -> None:
        """A write transaction committed; ``rows_changed`` is the writer's running count of the rows it
        changed (``total_changes``)."""
        if rows_changed - self._rows_when_pass_asked >= self._pass_after_rows:
            self._rows_when_pass_asked = rows_changed
            self._committed.set()

    async def close(self) -> None:
        """Stop; a pass under way in its thread is waited for, so no checkpoint outlives the owner."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._committed.wait()
            self._committed.clear()
            # Not a thread of lower priority: starved of the CPU (both cores are busy during a large
            # sync), a pass held the checkpoint for so long that the writer's own checkpoints all missed
            # their turns, and the log grew with every commit.
            work = asyncio.ensure_future(asyncio.to_thread(self._checkpoint))
            pause = self._pause_s
            try:
                if await asyncio.shield(work) >= self._writer_checkpoint_pages:
                    pause = STAND_ASIDE_S
            except asyncio.CancelledError:
                await asyncio.wait([work])  # the thread goes on until its pass is done
                if not work.cancelled() and work.exception() is not None:
                    log.debug("background checkpoint failed: %s", work.exception())
                raise
            except (sqlite3.Error, OSError) as exc:
                # Only a missed optimisation: the writer's own auto-checkpoint still copies the log.
                log.debug("background checkpoint failed: %s", exc)
            await asyncio.sleep(pause)
