"""The contract's timestamp format: UTC, milliseconds, ``Z`` (``2026-01-07T13:33:12.000Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_between(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 2)
