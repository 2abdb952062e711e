"""Stand-in job until the engine lands: reads nothing, records one empty batch."""

from __future__ import annotations

from service.ledger.runs import BatchCounts
from service.sync.job import RunContext


async def placeholder_job(ctx: RunContext) -> None:
    await ctx.ledger.record_progress(ctx.run.id, BatchCounts(processed=0, total=0), [])
