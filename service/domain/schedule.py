"""When scheduled runs are due: a cron expression in a time zone, read by croniter.

Five fields (minute hour day month weekday), or six with **seconds first**, the form of the job this
service replaces (``*/30 * * * * *``: every 30 seconds). croniter reads a sixth field as seconds *last*
by default, which would turn that expression into "every second of minutes 0 and 30"; it is told
otherwise here. The ``@hourly``-style aliases croniter knows are accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter


class InvalidSchedule(ValueError):
    """A schedule expression that cannot be used; the message says why."""


class InvalidTimeZone(InvalidSchedule):
    """The schedule's time zone is not one the system knows."""


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    timezone: str

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        expression = " ".join(expression.split())
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidTimeZone(
                f"unknown time zone {timezone!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        fields = expression.split(" ")
        if not expression.startswith("@") and len(fields) not in (5, 6):
            raise InvalidSchedule(
                f"{expression!r} has {len(fields)} fields; a schedule has 5 (minute hour day month weekday)"
                " or 6 with seconds first (e.g. '*/30 * * * * *')"
            )
        try:
            croniter(expression, datetime.now(UTC), second_at_beginning=True).get_next(datetime)
        except (CroniterError, ValueError, KeyError) as exc:
            raise InvalidSchedule(f"{expression!r} is not a cron expression: {exc}") from None
        return cls(expression, timezone)

    def _iterator(self, start: datetime) -> croniter:
        # croniter computes in the start's time zone (daylight saving included) and returns it aware.
        local = start.astimezone(ZoneInfo(self.timezone))
        return croniter(self.expression, local, second_at_beginning=True)

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment``, in UTC."""
        due: datetime = self._iterator(moment).get_next(datetime)
        return due.astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last due time at or before ``moment`` (``moment`` itself when it is one), in UTC."""
        due_next = self.next_after(moment)
        due: datetime = self._iterator(due_next).get_prev(datetime)
        return due.astimezone(UTC)
