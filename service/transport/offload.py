"""Mapping (parse, validate, hash) of feed chunks, in worker processes when the feed is large.

A large feed's chunks go to worker processes (one per CPU by default), several at a time, so
validation runs in parallel with the event loop (network reads, status requests) and the SQLite writes
instead of competing with them for the GIL.
A small feed (the 194-product demo, most tests) is mapped on the event loop in short slices: starting
a process would cost more than the whole run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import select
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from service.catalog.mapping import MappedChunk, MappedRow, map_items
from service.catalog.sink import FingerprintLookup
from service.domain.errors import SyncFailed
from service.domain.outcomes import ItemError
from service.support.tuning import keep_freed_memory
from service.transport.pacing import give_way
from service.transport.packing import PackedChunk, PrefetchedFingerprints, lookup_ids, map_items_packed
from service.upstream.feed import FeedChunk

# Feeds announcing fewer items than this are mapped on the loop; feeds with no announced total, or a
# larger one, in the worker processes.
PROCESS_THRESHOLD = 20_000
# Items mapped on the loop between two yields to it (a few ms): status requests are answered in between.
LOOP_SLICE = 100
# The workers' niceness: mapping is batch work, so when it competes with the service's event loop for a
# core, the loop (status polls, triggers) goes first and the sync takes the rest.
WORKER_NICENESS = 19
_MAX_DEFAULT_WORKERS = 4
# What the fork server imports once, so each worker forked from it starts with the mapping loaded.
WORKER_PRELOAD = ("service.transport.packing",)
# A warm-up task per worker: the pool starts a new worker only while none is idle, so each task holds
# its worker long enough for the next task to need another one.
_WARM_UP_S = 0.05


def default_workers() -> int:
    """One worker per CPU this process may run on, at most 4."""
    return max(1, min(len(os.sched_getaffinity(0)), _MAX_DEFAULT_WORKERS))


def _start_worker() -> None:
    """The workers' initializer: lower the priority, keep freed memory for the next chunk, and exit when
    the service is gone."""
    os.nice(WORKER_NICENESS)
    keep_freed_memory()
    parent = multiprocessing.parent_process()
    if parent is not None:  # None only when called outside a worker process
        threading.Thread(
            target=_exit_with_service, args=(parent.sentinel,), name="exit-with-service", daemon=True
        ).start()


def _exit_with_service(sentinel: int) -> None:
    # Only the service holds this pipe's write end, so it hangs up however the service died (SIGKILL
    # included), and the fork server and resource tracker, which exit once their last client is gone,
    # follow this worker instead of waiting for it forever.
    poller = select.poll()
    poller.register(sentinel, select.POLLIN)
    poller.poll()
    os._exit(1)


def _start_workers(pool: ProcessPoolExecutor, workers: int) -> None:
    for started in [pool.submit(time.sleep, _WARM_UP_S) for _ in range(workers)]:
        started.result()


class MappingPool:
    """The mapping worker processes, started by the first large run and kept for the next ones.

    Kept, not started per run: forking the workers costs tens of ms of CPU on a small machine, which a
    run cancelled right after its trigger would pay for nothing (and the trigger after it with it).
    Owned by the runner; :meth:`close` shuts the processes down.
    """

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or default_workers()
        self._pool: ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        return self._workers

    async def executor(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            return self._pool
        context = multiprocessing.get_context("forkserver")
        # The fork server imports the mapping code once per service process; the workers are then
        # forked from it in milliseconds (and forks of a clean process, not of this one).
        context.set_forkserver_preload(list(WORKER_PRELOAD))
        pool = self._pool = ProcessPoolExecutor(self._workers, mp_context=context, initializer=_start_worker)
        # Starting a worker is a blocking handshake with the fork server (which first has to start and
        # import the mapping): done in a thread, so the loop keeps answering requests meanwhile.
        await asyncio.to_thread(_start_workers, pool, self._workers)
        return pool

    def close(self) -> None:
        """Shut the processes down; a later large run (if any) starts new ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class ChunkMapper:
    """Maps the chunks of one run: on the loop for a small feed, in the pool's workers for a large one.

    :meth:`submit` starts a chunk and returns a task for its result, so several chunks can be in the
    workers at once; await the tasks in submission order to keep the feed's order. With ``lookup`` (the
    sink's), the workers skip the items unchanged since the last sync.
    """

    def __init__(
        self,
        currency: str,
        pool: MappingPool,
        process_threshold: int = PROCESS_THRESHOLD,
        lookup: FingerprintLookup | None = None,
    ) -> None:
        self._currency = currency
        self._pool = pool
        self._threshold = process_threshold
        self._lookup = lookup
        self._executor: ProcessPoolExecutor | None = None

    @property
    def uses_process(self) -> bool:
        """Whether this run's chunks go to worker processes (decided by the first chunk)."""
        return self._executor is not None

    @property
    def workers(self) -> int:
        return self._pool.workers

    def _wants_process(self, chunk: FeedChunk) -> bool:
        return self._executor is not None or chunk.total is None or chunk.total >= self._threshold

    async def map(self, chunk: FeedChunk) -> MappedChunk:
        return await (await self.submit(chunk))

    async def submit(self, chunk: FeedChunk) -> asyncio.Task[MappedChunk]:
        if not self._wants_process(chunk):
            return asyncio.create_task(self._map_on_loop(chunk))
        executor = self._executor = self._executor or await self._pool.executor()
        try:
            packed = asyncio.get_running_loop().run_in_executor(
                executor,
                map_items_packed,
                chunk.items,
                chunk.first_position,
                self._currency,
                chunk.total,
                self._lookup,
            )
        except BrokenProcessPool as exc:
            raise self._worker_died(exc) from exc
        return asyncio.create_task(self._unpack(packed, chunk))

    async def _unpack(self, packed: asyncio.Future[PackedChunk], chunk: FeedChunk) -> MappedChunk:
        try:
            mapped = await packed
        except BrokenProcessPool as exc:
            raise self._worker_died(exc) from exc
        return await mapped.unpack(chunk.items, chunk.first_position, self._currency)

    def _worker_died(self, exc: BrokenProcessPool) -> SyncFailed:
        # A worker was killed (e.g. by the OOM killer): this run fails; the next one gets new workers.
        self._pool.close()
        return SyncFailed(f"A mapping worker process died: {exc}")

    async def _map_on_loop(self, chunk: FeedChunk) -> MappedChunk:
        items: list[MappedRow | ItemError] = []
        lookup: FingerprintLookup | None = None
        if self._lookup is not None:
            # Read once for the chunk, in a thread: a lookup may wait on a database (a server's round
            # trip), which the event loop must not.
            found = await asyncio.to_thread(self._lookup, lookup_ids(chunk.items))
            lookup = PrefetchedFingerprints(found)
        for start in range(0, len(chunk.items), LOOP_SLICE):
            part = chunk.items[start : start + LOOP_SLICE]
            first = chunk.first_position + start
            if lookup is None:
                items.extend(map_items(part, first, self._currency, chunk.total).items)
            else:
                # As in the workers: an item received exactly as last time is not mapped again (most of
                # an identical re-sync's time otherwise, for a feed of a few thousand products).
                packed = map_items_packed(part, first, self._currency, chunk.total, lookup)
                items.extend((await packed.unpack(part, first, self._currency)).items)
            await give_way()  # let status requests and network reads in between slices
        return MappedChunk(items, chunk.total)
