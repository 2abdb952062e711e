"""The catalog sync job: source -> mapping -> sink, as a three-stage pipeline with bounded queues.

Fetching, mapping (CPU: validation, hashing; in a worker process for large feeds, see offload.py) and
writing overlap, and at most a few chunks are in memory at any time, whatever the feed's size.
Cancellation (cancel, stall, shutdown) is plain asyncio cancellation: the batch being written rolls
back with its counters, so the ledger and the catalog never disagree.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from service.ledger.runs import BatchCounts, ItemError
from service.sync.job import RunContext, SyncFailed
from service.sync.mapping import MappedChunk, MappedRow
from service.sync.offload import ChunkMapper
from service.sync.sink import CatalogSink, SqliteCatalogSink
from service.sync.sources import FeedChunk, Source, redact_url, source_for

log = logging.getLogger(__name__)

_QUEUE_CHUNKS = 4
# A partial batch is written after this long, so progress shows on a slow feed.
_FLUSH_AFTER_S = 0.5


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


class _End:
    pass


_END = _End()


async def _fetch(source: Source, out: asyncio.Queue[FeedChunk | _Failed | _End]) -> None:
    try:
        async for chunk in source.chunks():
            await out.put(chunk)
    except Exception as exc:  # handed to the writer, which raises it in the job's own task
        await out.put(_Failed(exc))
        return
    await out.put(_END)


async def _map(
    chunks: asyncio.Queue[FeedChunk | _Failed | _End],
    out: asyncio.Queue[MappedChunk | _Failed | _End],
    mapper: ChunkMapper,
) -> None:
    while True:
        chunk = await chunks.get()
        if not isinstance(chunk, FeedChunk):
            await out.put(chunk)
            return
        try:
            mapped = await mapper.map(chunk)
        except Exception as exc:
            await out.put(_Failed(exc))
            return
        await out.put(mapped)


async def _write_all(
    ctx: RunContext, sink: CatalogSink, mapped: asyncio.Queue[MappedChunk | _Failed | _End]
) -> BatchCounts:
    """Write batches of ``batch_size`` items in feed order; a partial batch waits at most ``flush_after``."""
    totals = BatchCounts()
    batch_size = ctx.settings.batch_size
    pending: list[MappedRow | ItemError] = []
    total: int | None = None
    # Partial batches are written often enough to keep the heartbeat well inside the stall timeout.
    flush_after = min(_FLUSH_AFTER_S, ctx.settings.stall_timeout_s / 4)
    last_flush = -math.inf  # the first chunk is written at once, so progress shows immediately

    async def flush(count: int) -> None:
        nonlocal pending, last_flush, totals
        batch, pending = pending[:count], pending[count:]
        rows = [item for item in batch if not isinstance(item, ItemError)]
        errors = [item for item in batch if isinstance(item, ItemError)]
        for error in errors:
            log.info(
                "run %d: item at position %d skipped: %s",
                ctx.run.id,
                error.position,
                error.reason,
                extra={"run_id": ctx.run.id},
            )
        totals += await sink.write(ctx.run.id, rows, errors, len(batch), total)
        last_flush = time.monotonic()

    while True:
        wait = None if not pending else max(0.0, flush_after - (time.monotonic() - last_flush))
        try:
            async with asyncio.timeout(wait):
                item = await mapped.get()
        except TimeoutError:
            await flush(len(pending))  # a slow feed still shows progress
            continue
        if isinstance(item, _Failed):
            raise item.error
        if isinstance(item, _End):
            break
        pending.extend(item.items)
        total = item.total if item.total is not None else total
        while len(pending) >= batch_size:
            await flush(batch_size)
    if pending or totals.processed == 0:
        await flush(len(pending))  # also records the total of an empty feed
    return totals


async def run_catalog_sync(ctx: RunContext, sink: CatalogSink | None = None) -> None:
    """Stream the configured feed into the catalog; raise SyncFailed with a clear message on failure."""
    settings = ctx.settings
    sink = sink or SqliteCatalogSink(ctx.ledger)
    source = source_for(settings, ctx.http, ctx.source_url)
    log.info(
        "run %d: syncing %s feed from %s",
        ctx.run.id,
        settings.source_format,
        redact_url(ctx.source_url),
        extra={"run_id": ctx.run.id},
    )
    started = time.monotonic()
    chunks: asyncio.Queue[FeedChunk | _Failed | _End] = asyncio.Queue(_QUEUE_CHUNKS)
    mapped: asyncio.Queue[MappedChunk | _Failed | _End] = asyncio.Queue(_QUEUE_CHUNKS)
    mapper = ChunkMapper(settings.currency)
    stages = [
        asyncio.create_task(_fetch(source, chunks), name=f"sync-{ctx.run.id}-fetch"),
        asyncio.create_task(_map(chunks, mapped, mapper), name=f"sync-{ctx.run.id}-map"),
    ]
    try:
        async with asyncio.timeout(settings.run_timeout_s) as deadline:
            totals = await _write_all(ctx, sink, mapped)
    except TimeoutError:
        if deadline.expired():
            raise SyncFailed(
                f"Sync timed out: the run took longer than {settings.run_timeout_s:g} s"
            ) from None
        raise
    finally:
        for stage in stages:
            stage.cancel()
        await asyncio.gather(*stages, return_exceptions=True)
        mapper.close()
    elapsed = time.monotonic() - started
    log.info(
        "run %d: synced %d items in %.2f s (%d/s): created %d, updated %d, unchanged %d, errors %d, "
        "categories created %d",
        ctx.run.id,
        totals.processed,
        elapsed,
        totals.processed / elapsed if elapsed else 0,
        totals.created,
        totals.updated,
        totals.unchanged,
        totals.errors,
        totals.categories_created,
        extra={"run_id": ctx.run.id},
    )
