"""A sync job for tests of the layers around the engine (history, retention, metrics, logs).

It goes through the real seam: records a batch (counters and item errors) in the real ledger, can be held
mid-run on an Event, and fails with SyncFailed when told to. The engine itself is tested elsewhere.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from service.domain.errors import SyncFailed
from service.domain.outcomes import BatchCounts, ItemError
from service.sync.job import RunContext


@dataclass
class ScriptedJob:
    counts: BatchCounts = field(default_factory=BatchCounts)
    item_errors: int = 0
    fail_with: str | None = None
    hold: asyncio.Event | None = None
    calls: int = 0

    async def __call__(self, ctx: RunContext) -> None:
        self.calls += 1
        errors = [
            ItemError(position=i, external_id=f"ext-{i}", reason=f"price is missing (item {i})")
            for i in range(self.item_errors)
        ]
        await ctx.ledger.record_progress(ctx.run.id, self.counts, errors)
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_with is not None:
            raise SyncFailed(self.fail_with)
