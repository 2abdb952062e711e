"""The catalog sync job: source -> mapping -> sink, as a pipeline of stages with bounded queues.

Fetching, mapping (CPU: validation, hashing; in worker processes for large feeds, several chunks at a
time, see offload.py) and writing overlap, and at most a few chunks are in memory at any time, whatever
the feed's size.
Cancellation (cancel, stall, shutdown) is plain asyncio cancellation: the batch being written rolls
back with its counters, so the ledger and the catalog never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

from service.catalog.mapping import MappedChunk, MappedRow
from service.catalog.sink import CatalogSink
from service.domain.errors import SyncFailed
from service.domain.outcomes import BatchCounts, ItemError
from service.support.tuning import release_free_memory
from service.sync.job import RunContext
from service.sync.seen_ids import SeenIds
from service.transport.offload import ChunkMapper, MappingPool
from service.upstream.feed import FeedChunk, ReadProgress, Source
from service.upstream.sources import source_for
from service.upstream.urls import redact_url

log = logging.getLogger(__name__)

_QUEUE_CHUNKS = 2
# Freed heap pages are given back to the OS every this many batches (see release_free_memory).
_TRIM_EVERY_BATCHES = 16
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
        # aclosing: a cancelled run closes the source at once (its pages in flight with it).
        async with contextlib.aclosing(source.chunks()) as chunks:
            async for chunk in chunks:
                await out.put(chunk)
    except Exception as exc:  # handed to the writer, which raises it in the job's own task
        await out.put(_Failed(exc))
        return
    await out.put(_END)


async def _submit(
    chunks: asyncio.Queue[FeedChunk | _Failed | _End],
    started: asyncio.Queue[asyncio.Task[MappedChunk] | _Failed | _End],
    mapper: ChunkMapper,
) -> None:
    """Hand chunks to the mapper as they arrive; ``started`` (bounded) keeps its tasks in feed order."""
    while True:
        chunk = await chunks.get()
        if not isinstance(chunk, FeedChunk):
            await started.put(chunk)
            return
        try:
            task = await mapper.submit(chunk)
        except Exception as exc:
            await started.put(_Failed(exc))
            return
        try:
            await started.put(task)
        except BaseException:
            task.cancel()
            raise


async def _collect(
    started: asyncio.Queue[asyncio.Task[MappedChunk] | _Failed | _End],
    out: asyncio.Queue[MappedChunk | _Failed | _End],
) -> None:
    """Await the mapping tasks in feed order; on the way out, cancel those nobody will await."""
    try:
        while True:
            task = await started.get()
            if not isinstance(task, asyncio.Task):
                await out.put(task)
                return
            try:
                mapped = await task
            except Exception as exc:
                await out.put(_Failed(exc))
                return
            await out.put(mapped)
    finally:
        while not started.empty():
            leftover = started.get_nowait()
            if isinstance(leftover, asyncio.Task):
                leftover.cancel()


async def _split_duplicates(
    batch: list[MappedRow | ItemError], seen: SeenIds
) -> tuple[list[MappedRow], list[ItemError]]:
    """The batch's rows to write, and its item errors: those mapping found, and every row whose id an
    earlier item of the feed already took (the first copy wins, on every run)."""
    errors = [item for item in batch if isinstance(item, ItemError)]
    rows = [item for item in batch if not isinstance(item, ItemError)]
    earlier = await seen.first_positions([(row.external_id, row.position) for row in rows])
    if earlier:
        errors.extend(
            ItemError(
                row.position, row.external_id, f"duplicate id: already at position {earlier[row.position]}"
            )
            for row in rows
            if row.position in earlier
        )
        errors.sort(key=lambda error: error.position)
        rows = [row for row in rows if row.position not in earlier]
    return rows, errors


def _first_repeat(batch: list[MappedRow | ItemError]) -> int:
    """The index of the first row whose id an earlier row of ``batch`` has (the batch's length if none)."""
    named = [item.external_id for item in batch if not isinstance(item, ItemError)]
    if len(set(named)) == len(named):
        return len(batch)  # nearly every batch: no id twice, found by one set rather than a loop
    ids: set[str] = set()
    for index, item in enumerate(batch):
        if isinstance(item, ItemError):
            continue
        if item.external_id in ids:
            return index
        ids.add(item.external_id)
    return len(batch)


class FeedWritten(NamedTuple):
    totals: BatchCounts
    unnamed_errors: int  # item errors whose upstream id could not be read


async def _write_all(
    ctx: RunContext,
    sink: CatalogSink,
    mapped: asyncio.Queue[MappedChunk | _Failed | _End],
    progress: ReadProgress,
    seen: SeenIds,
) -> FeedWritten:
    """Write batches of ``batch_size`` items in feed order; a partial batch waits at most ``flush_after``."""
    totals = BatchCounts()
    batch_size = ctx.settings.batch_size
    pending: list[MappedRow | ItemError] = []
    total: int | None = None
    # Partial batches are written often enough to keep the heartbeat well inside the stall timeout.
    flush_after = min(_FLUSH_AFTER_S, ctx.settings.stall_timeout_s / 4)
    # With nothing to write, bytes still arriving (a page that trickles in) move the heartbeat this often.
    beat_every = ctx.settings.stall_timeout_s / 4
    last_flush = -math.inf  # the first chunk is written at once, so progress shows immediately
    last_beat = time.monotonic()
    batches = 0
    unnamed_errors = 0

    async def flush(count: int) -> None:
        nonlocal pending
        batch, pending = pending[:count], pending[count:]
        # Each write holds an id once: a later copy is then judged only after the sink has taken or
        # refused the first (a refused product leaves its id to the next item that has it).
        while True:  # at least one write: an empty feed's flush records its total
            cut = _first_repeat(batch)
            await write(batch[:cut])
            batch = batch[cut:]
            if not batch:
                break

    async def write(batch: list[MappedRow | ItemError]) -> None:
        nonlocal last_flush, last_beat, totals, batches, unnamed_errors
        rows, errors = await _split_duplicates(batch, seen)
        for error in errors:
            log.info(
                "run %d: item at position %d skipped: %s",
                ctx.run.id,
                error.position,
                error.reason,
                extra={"run_id": ctx.run.id},
            )
        written = await sink.write(ctx.run.id, rows, errors, len(batch), total, dry_run=bool(ctx.run.dry_run))
        # A product the catalog refused (a category clash) holds no id: a later item may take it.
        await seen.release([(error.external_id or "", error.position) for error in written.refused])
        # Items in error are still listed by the feed: their products are not gone upstream.
        failed = [*errors, *written.refused]
        await seen.list_errors([error.external_id for error in failed if error.external_id is not None])
        unnamed_errors += sum(1 for error in failed if error.external_id is None)
        totals += written.counts
        last_flush = last_beat = time.monotonic()
        batches += 1
        if batches % _TRIM_EVERY_BATCHES == 0:
            await asyncio.to_thread(release_free_memory)

    async def beat_if_reading() -> None:
        nonlocal last_beat
        if progress.last_read_at > last_beat:
            await ctx.ledger.heartbeat(ctx.run.id)
            last_beat = time.monotonic()

    while True:
        if pending:
            wait = max(0.0, flush_after - (time.monotonic() - last_flush))
        else:
            wait = max(0.0, beat_every - (time.monotonic() - last_beat))
        try:
            async with asyncio.timeout(wait):
                item = await mapped.get()
        except TimeoutError:
            if pending:
                await flush(len(pending))  # a slow feed still shows progress
            else:
                await beat_if_reading()
            continue
        if isinstance(item, _Failed):
            # Items that arrived before the fault are valid: write them, so the next run has less to do
            # (mapping runs ahead of writing, so a fault can arrive while a chunk still waits here).
            if pending:
                await flush(len(pending))
            raise item.error
        if isinstance(item, _End):
            break
        pending.extend(item.items)
        total = item.total if item.total is not None else total
        while len(pending) >= batch_size:
            await flush(batch_size)
    if pending or totals.processed == 0:
        await flush(len(pending))  # also records the total of an empty feed
    return FeedWritten(totals, unnamed_errors)


def _check_error_fraction(totals: BatchCounts, max_fraction: float) -> None:
    if totals.processed and totals.errors > max_fraction * totals.processed:
        raise SyncFailed(
            f"{totals.errors} of {totals.processed} items were item errors, more than the allowed"
            f" fraction of {max_fraction:g} (SYNC_MAX_ERROR_FRACTION); the other"
            f" {totals.processed - totals.errors} items were synced"
        )


# Catalog ids compared with the feed's per step, when looking for the products gone upstream.
_COMPARE_STEP = 1000


async def _remove_missing(
    ctx: RunContext, sink: CatalogSink, seen: SeenIds, totals: BatchCounts, unnamed_errors: int
) -> BatchCounts:
    """After the whole feed was read: archive or delete the products it no longer lists.

    Never more than SYNC_REMOVED_MAX_FRACTION of the catalog: an upstream that answers an empty or cut
    short catalog with 200 would otherwise empty the shop. Nothing is removed then, and the run fails.
    """
    settings = ctx.settings
    mode = settings.removed_products
    assert mode != "keep"
    if unnamed_errors:
        # An item whose id could not be read may be any product: none can be called gone for sure.
        log.warning(
            "run %d: %d item errors without a readable id, so no product is taken for gone upstream",
            ctx.run.id,
            unnamed_errors,
            extra={"run_id": ctx.run.id},
        )
        return BatchCounts()
    offered = missing = 0
    after: str | None = None
    while ids := await sink.catalog_ids(after, _COMPARE_STEP):
        offered += len(ids)
        missing += await seen.note_missing(ids)
        after = ids[-1]
    if not missing:
        return BatchCounts()
    if missing > settings.removed_max_fraction * offered:
        raise SyncFailed(
            f"Refusing to remove {missing} of the {offered} products: the feed no longer lists them, more"
            f" than SYNC_REMOVED_MAX_FRACTION ({settings.removed_max_fraction:g}) of the catalog, as when"
            " an upstream answers an empty or cut-short catalog. Nothing was removed; the"
            f" {totals.processed} items read were synced"
        )
    removed = BatchCounts()
    last = ""
    while batch := await seen.missing(last, settings.batch_size):
        removed += await sink.remove(ctx.run.id, batch, mode, dry_run=bool(ctx.run.dry_run))
        last = batch[-1]
    log.info(
        "run %d: %s %d products the feed no longer lists",
        ctx.run.id,
        "archived" if mode == "archive" else "deleted",
        removed.removed,
        extra={"run_id": ctx.run.id},
    )
    return removed


async def run_catalog_sync(ctx: RunContext) -> None:
    """Stream the configured feed into the run's sink; raise SyncFailed with a clear message on failure."""
    settings = ctx.settings
    sink = ctx.sink
    progress = ReadProgress()
    source = source_for(settings, ctx.http, ctx.source_url, progress)
    log.info(
        "run %d: syncing %s feed from %s",
        ctx.run.id,
        settings.source_format,
        redact_url(ctx.source_url),
        extra={"run_id": ctx.run.id},
    )
    started = time.monotonic()
    pool = ctx.mapping_pool or MappingPool(settings.mapping_workers)
    mapper = ChunkMapper(settings.currency, pool, lookup=await sink.unchanged_lookup())
    chunks: asyncio.Queue[FeedChunk | _Failed | _End] = asyncio.Queue(_QUEUE_CHUNKS)
    # Chunks being mapped, in feed order: these, the one the collector awaits and the one the submitter
    # holds, so every worker has the next chunk ready when it finishes one.
    in_workers: asyncio.Queue[asyncio.Task[MappedChunk] | _Failed | _End] = asyncio.Queue(mapper.workers)
    mapped: asyncio.Queue[MappedChunk | _Failed | _End] = asyncio.Queue(_QUEUE_CHUNKS)
    stages = [
        asyncio.create_task(_fetch(source, chunks), name=f"sync-{ctx.run.id}-fetch"),
        asyncio.create_task(_submit(chunks, in_workers, mapper), name=f"sync-{ctx.run.id}-submit"),
        asyncio.create_task(_collect(in_workers, mapped), name=f"sync-{ctx.run.id}-collect"),
    ]
    seen = SeenIds()
    try:
        await _write_and_remove(ctx, sink, mapped, progress, seen, stages, pool, started)
    finally:
        await seen.close()


async def _write_and_remove(
    ctx: RunContext,
    sink: CatalogSink,
    mapped: asyncio.Queue[MappedChunk | _Failed | _End],
    progress: ReadProgress,
    seen: SeenIds,
    stages: list[asyncio.Task[None]],
    pool: MappingPool,
    started: float,
) -> None:
    """Write the feed as the stages map it (within the run's time limit), then, once all of it is
    written, check the error fraction and remove the products it no longer lists."""
    settings = ctx.settings
    try:
        async with asyncio.timeout(settings.run_timeout_s) as deadline:
            totals, unnamed_errors = await _write_all(ctx, sink, mapped, progress, seen)
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
        if ctx.mapping_pool is None:
            pool.close()
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
    _check_error_fraction(totals, settings.max_error_fraction)
    if settings.removed_products != "keep":
        await _remove_missing(ctx, sink, seen, totals, unnamed_errors)
