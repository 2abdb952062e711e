"""Mapping (parse, validate, hash) of feed chunks, on the second core when the feed is large.

A large feed's chunks go to one worker process, so validation runs in parallel with the event loop
(network reads, status requests) and the SQLite writes instead of competing with them for the GIL.
A small feed (the 194-product demo, most tests) is mapped on the event loop in short slices: starting
a process would cost more than the whole run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from service.ledger.runs import ItemError
from service.sync.mapping import MappedChunk, MappedRow, map_items, map_items_packed
from service.sync.sources import FeedChunk

# Feeds announcing fewer items than this are mapped on the loop; feeds with no announced total, or a
# larger one, in the worker process.
PROCESS_THRESHOLD = 20_000
# Items mapped on the loop between two yields to it (a few ms): status requests are answered in between.
LOOP_SLICE = 100


# The worker's niceness: mapping is batch work, so when the two compete for a core, the service's event
# loop (status polls, triggers) goes first and the sync takes the rest.
WORKER_NICENESS = 10


def _lower_priority() -> None:
    os.nice(WORKER_NICENESS)


def _start_worker(pool: ProcessPoolExecutor) -> None:
    pool.submit(int).result()  # the first submit starts the worker process; int() is a no-op task


class ChunkMapper:
    """Maps the chunks of one run; owns at most one worker process, shut down by :meth:`close`."""

    def __init__(self, currency: str, process_threshold: int = PROCESS_THRESHOLD) -> None:
        self._currency = currency
        self._threshold = process_threshold
        self._pool: ProcessPoolExecutor | None = None

    @property
    def uses_process(self) -> bool:
        """Whether this run's chunks go to the worker process (decided by the first chunk)."""
        return self._pool is not None

    def _wants_process(self, chunk: FeedChunk) -> bool:
        return self._pool is not None or chunk.total is None or chunk.total >= self._threshold

    async def map(self, chunk: FeedChunk) -> MappedChunk:
        if not self._wants_process(chunk):
            return await self._map_on_loop(chunk)
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            # The fork server imports the mapping code once per service process; each run's worker is
            # then forked from it in milliseconds (and a fork of a clean process, not of this one).
            context.set_forkserver_preload(["service.sync.mapping"])
            self._pool = ProcessPoolExecutor(1, mp_context=context, initializer=_lower_priority)
            # Starting the worker is a blocking handshake with the fork server (which first has to start
            # and import the mapping, on a service's first large run): done in a thread, so the loop
            # keeps answering requests (the trigger that started this run among them) meanwhile.
            await asyncio.to_thread(_start_worker, self._pool)
        loop = asyncio.get_running_loop()
        packed = await loop.run_in_executor(
            self._pool, map_items_packed, chunk.items, chunk.first_position, self._currency, chunk.total
        )
        return packed.unpack()

    async def _map_on_loop(self, chunk: FeedChunk) -> MappedChunk:
        items: list[MappedRow | ItemError] = []
        for start in range(0, len(chunk.items), LOOP_SLICE):
            part = chunk.items[start : start + LOOP_SLICE]
            items.extend(map_items(part, chunk.first_position + start, self._currency, chunk.total).items)
            await asyncio.sleep(0)  # let status requests and network reads in between slices
        return MappedChunk(items, chunk.total)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
