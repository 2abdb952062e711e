"""The webhook outbox in the service's database: which runs are owed a notification, and each attempt.

The rules are the database's: one delivery per run and target (a unique key), a claim that lapses (so
a dead process's delivery is taken over), and finished deliveries that cannot change (a trigger).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from service.database.access import Database, Row
from service.database.list_params import json_array
from service.notify import sql
from service.support.timeutil import to_iso

DeliveryStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class Target:
    key: str  # a hash of the full URL, which may hold a secret
    label: str  # the URL as shown


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    run_id: int
    target: str
    attempts: int  # made before this one


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one attempt went; ``status`` 'pending' means it is tried again at ``next_attempt_at``."""

    status: DeliveryStatus
    http_status: int | None
    error: str | None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    label: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: str | None
    next_attempt_at: str
    delivered_at: str | None

    @classmethod
    def from_row(cls, row: Row) -> DeliveryRecord:
        return cls(**{name: row[name] for name in row.keys()})  # noqa: SIM118


class WebhookOutbox:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._dialect = database.dialect

    async def add_targets(self, targets: Sequence[Target], now: datetime) -> None:
        async with self._db.transaction() as tx:
            for target in targets:
                await tx.execute(
                    sql.ADD_TARGET, {"target": target.key, "label": target.label, "now": to_iso(now)}
                )

    async def has_work(self, targets: Sequence[str], now: datetime) -> bool:
        """Whether a run is owed a delivery or one is due: a read, so an idle poll never takes the lock."""
        rows = await self._db.fetch_all(
            sql.HAS_WORK[self._dialect], {"targets": json_array(targets), "now": to_iso(now)}
        )
        return bool(rows and rows[0][0])

    async def claim_due(
        self, targets: Sequence[str], owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """Make the deliveries owed to finished runs, then claim the due ones (up to ``limit``)."""
        keys = json_array(targets)
        async with self._db.transaction() as tx:
            await tx.execute(sql.ENQUEUE[self._dialect], {"targets": keys, "now": to_iso(now)})
            await tx.execute(sql.ADVANCE_MARKS[self._dialect], {"targets": keys})
            rows = await tx.fetch_all(
                sql.CLAIM_DUE[self._dialect],
                {
                    "targets": keys,
                    "owner": owner,
                    "now": to_iso(now),
                    "until": to_iso(lease_until),
                    "limit": limit,
                },
            )
        return [ClaimedDelivery(*row) for row in rows]

    async def record(self, delivery: ClaimedDelivery, owner: str, attempt: Attempt, now: datetime) -> bool:
        """Record an attempt; False when the claim had lapsed and another process took the delivery."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sql.RECORD_ATTEMPT,
                {
                    "id": delivery.id,
                    "owner": owner,
                    "status": attempt.status,
                    "last_status": attempt.http_status,
                    "last_error": attempt.error,
                    "now": to_iso(now),
                    "delivered_at": to_iso(now) if attempt.status == "delivered" else None,
                    "next_attempt_at": (
                        to_iso(attempt.next_attempt_at) if attempt.next_attempt_at is not None else None
                    ),
                },
            )
        return changed == 1

    async def deliveries_of(self, run_id: int) -> list[DeliveryRecord]:
        rows = await self._db.fetch_all(sql.DELIVERIES_OF_RUN, (run_id,))
        return [DeliveryRecord.from_row(row) for row in rows]
