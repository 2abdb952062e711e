"""The schedule's loop: sleep until the next due time, then tick (the ledger decides what a tick does).

One loop per process. With several processes on one database every loop wakes for every tick, and
the tick's row in the ledger gives it to one of them; the others find it taken.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from service.database.errors import STORAGE_FAULTS
from service.domain.errors import SyncFailed
from service.domain.schedule import CronSchedule
from service.ledger.records import TickSkipped, TickStarted, TickTaken
from service.ledger.runs import Ledger
from service.support.timeutil import to_iso, utc_now
from service.sync.runner import SyncRunner

log = logging.getLogger(__name__)

# The longest single sleep: the wall clock is looked at again after it, so a clock set forward or back
# (NTP, a suspended VM) moves the next tick by at most this much.
_MAX_SLEEP_S = 30.0


class Scheduler:
    def __init__(self, schedule: CronSchedule, runner: SyncRunner, ledger: Ledger, *, catch_up: bool) -> None:
        self._schedule = schedule
        self._runner = runner
        self._ledger = ledger
        self._catch_up = catch_up
        self._next_due: datetime | None = None

    @property
    def label(self) -> str:
        """The schedule as the ledger records it with each tick."""
        return f"{self._schedule.expression} ({self._schedule.timezone})"

    def next_run_at(self) -> datetime:
        """When the next tick is due: a function of the schedule and the clock.

        Remembered until it passes, because status polls ask many times a second and croniter takes
        tens of microseconds to answer.
        """
        now = utc_now()
        if self._next_due is None or self._next_due <= now:
            self._next_due = self._schedule.next_after(now)
        return self._next_due

    async def run(self) -> None:
        """Until cancelled: one catch-up tick if one was missed, then every tick as it falls due."""
        if self._catch_up:
            await self._catch_up_missed()
        while True:
            due = self._schedule.next_after(utc_now())
            await _sleep_until(due)
            await self._tick(due, catch_up=False)

    async def _catch_up_missed(self) -> None:
        """One run for the last due time, when it passed while no process was running the schedule.

        Only the latest missed tick: however long the service was down, it is one run, never a burst.
        A ledger that never saw a tick is a new install, which has missed nothing.
        """
        try:
            last = await self._ledger.latest_tick_due()
        except STORAGE_FAULTS as exc:
            log.warning("could not read the schedule's last tick; no catch-up run: %s", exc)
            return
        due = self._schedule.latest_at_or_before(utc_now())
        if last is not None and last < due:
            log.info("the scheduled run due at %s was missed while the service was down", to_iso(due))
            await self._tick(due, catch_up=True)

    async def _tick(self, due: datetime, *, catch_up: bool) -> None:
        try:
            outcome = await self._runner.tick(due, self.label, catch_up=catch_up)
        except (*STORAGE_FAULTS, SyncFailed) as exc:
            # A busy or failing database, or a shutdown: this tick is lost, the next one tries again.
            log.warning("scheduled tick due at %s failed: %s", to_iso(due), exc)
            return
        if isinstance(outcome, TickStarted):
            log.info("scheduled run %s started (due at %s)", outcome.run.id, to_iso(due))
        elif isinstance(outcome, TickSkipped):
            log.info(
                "scheduled tick due at %s skipped: run %s is in progress", to_iso(due), outcome.running.id
            )
        elif isinstance(outcome, TickTaken):
            log.debug("scheduled tick due at %s was claimed by another process", to_iso(due))


async def _sleep_until(due: datetime) -> None:
    # Sleeping is the point here (no event will say the time has come), in bounded steps (see above).
    while (remaining := (due - utc_now()).total_seconds()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(remaining, _MAX_SLEEP_S))
