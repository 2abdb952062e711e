"""The chunk mapper: large feeds are mapped in a real worker process, with the same result as in-process."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson
import pytest

from service.catalog.mapping import ProductRow, map_item, map_items
from service.demo_upstream.products import demo_product
from service.domain.errors import SyncFailed
from service.domain.outcomes import ItemError
from service.transport.offload import WORKER_NICENESS, ChunkMapper, MappingPool
from service.transport.packing import LazyRow, map_items_packed
from service.upstream.feed import FeedChunk, RawItem


def feed_lines(count: int) -> list[RawItem]:
    lines: list[RawItem] = [orjson.dumps(demo_product(index)) for index in range(count)]
    lines[3] = b'{"id": 4, "title": "no price", "category": "beauty"}'  # an item error
    lines[5] = b"{not json"
    return lines


async def test_a_large_feed_is_mapped_in_a_worker_process_with_the_same_result() -> None:
    lines = feed_lines(300)
    pool = MappingPool()
    mapper = ChunkMapper("USD", pool, process_threshold=100)
    try:
        mapped = await mapper.map(FeedChunk(lines, 1000, 300))
        assert mapper.uses_process
        expected = map_items(lines, 1000, "USD", 300)
        assert mapped.rows == expected.rows
        assert mapped.errors == expected.errors
        assert mapped.total == 300
        assert [item.position for item in mapped.items] == list(range(1000, 1300))
        assert len(mapped.errors) == 2
    finally:
        pool.close()


async def test_a_feed_without_a_total_goes_to_the_worker_process() -> None:
    lines = feed_lines(10)
    pool = MappingPool()
    mapper = ChunkMapper("EUR", pool)
    try:
        mapped = await mapper.map(FeedChunk(lines, 0, None))
        assert mapper.uses_process
        expected = map_items(lines, 0, "EUR", None)
        assert (mapped.rows, mapped.errors, mapped.total) == (expected.rows, expected.errors, None)
    finally:
        pool.close()


async def test_a_small_feed_is_mapped_on_the_loop_without_a_process() -> None:
    lines = feed_lines(250)
    mapper = ChunkMapper("USD", MappingPool())
    mapped = await mapper.map(FeedChunk(lines, 0, 194))
    assert not mapper.uses_process
    assert mapped == map_items(lines, 0, "USD", 194)


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _stat_field(pid: int, field: int) -> int:
    # The fields of /proc/<pid>/stat are numbered from 1; those after the parenthesised command name
    # (field 2, which may hold spaces) start at 3.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[field - 3])


def _niceness(pid: int) -> int:
    return _stat_field(pid, 19)


async def test_the_worker_process_yields_the_cpu_to_the_service() -> None:
    pool = MappingPool()
    mapper = ChunkMapper("USD", pool, process_threshold=1)
    try:
        await mapper.map(FeedChunk(feed_lines(10), 0, 10))
        fork_servers = [pid for pid in _children(os.getpid()) if b"forkserver" in _cmdline(pid)]
        assert all(_niceness(server) == os.nice(0) for server in fork_servers)
        # A worker lowers its priority first thing, but one may still be starting: allow it a moment.
        niceness: set[int] = set()
        for _ in range(100):
            workers = [worker for server in fork_servers for worker in _children(server)]
            niceness = {_niceness(worker) for worker in workers}
            if niceness == {os.nice(0) + WORKER_NICENESS}:
                break
            await asyncio.sleep(0.05)
        assert niceness == {os.nice(0) + WORKER_NICENESS}, "workers not at the lower priority"
    finally:
        pool.close()


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_chunks_mapped_by_several_workers_at_once_come_back_in_feed_order() -> None:
    lines = feed_lines(1200)
    pool = MappingPool(workers=2)
    mapper = ChunkMapper("USD", pool, process_threshold=1)
    try:
        tasks = [
            await mapper.submit(FeedChunk(lines[start : start + 200], start, 1200))
            for start in range(0, 1200, 200)
        ]
        mapped = [await task for task in tasks]
    finally:
        pool.close()
    assert mapper.workers == 2
    expected = map_items(lines, 0, "USD", 1200)
    assert [row for chunk in mapped for row in chunk.rows] == expected.rows
    assert [error for chunk in mapped for error in chunk.errors] == expected.errors


def _worker_pids() -> set[int]:
    fork_servers = [pid for pid in _children(os.getpid()) if b"forkserver" in _cmdline(pid)]
    return {worker for server in fork_servers for worker in _children(server)}


async def test_the_pool_keeps_its_workers_for_the_next_run() -> None:
    pool = MappingPool(workers=1)
    try:
        first = ChunkMapper("USD", pool, process_threshold=1)
        await first.map(FeedChunk(feed_lines(10), 0, 10))
        workers = _worker_pids()
        second = ChunkMapper("USD", pool, process_threshold=1)
        mapped = await second.map(FeedChunk(feed_lines(10), 0, 10))
        assert second.uses_process and len(mapped.rows) == 8
        assert _worker_pids() == workers  # no new process for the second run
    finally:
        pool.close()


async def test_a_killed_worker_fails_the_run_and_the_next_run_gets_new_workers() -> None:
    pool = MappingPool(workers=1)
    try:
        mapper = ChunkMapper("USD", pool, process_threshold=1)
        await mapper.map(FeedChunk(feed_lines(10), 0, 10))
        for worker in _worker_pids():
            os.kill(worker, signal.SIGKILL)
        with pytest.raises(SyncFailed, match="mapping worker process died"):
            for _ in range(50):  # the pool notices the death on its next submit or result
                await mapper.map(FeedChunk(feed_lines(10), 0, 10))
                await asyncio.sleep(0.05)
        next_run = ChunkMapper("USD", pool, process_threshold=1)
        mapped = await next_run.map(FeedChunk(feed_lines(10), 0, 10))
        assert len(mapped.rows) == 8
    finally:
        pool.close()


def test_a_chunk_maps_each_item_as_it_would_alone_exact_numbers_included() -> None:
    """The check for numbers a double may not hold runs once per chunk: an item that has one is still
    read exactly, wherever it is in the chunk, and the others as usual."""
    lines = [orjson.dumps(demo_product(index)) for index in range(6)]

    def with_literal(index: int, field: str, literal: bytes) -> bytes:
        product = {**demo_product(index), field: "__literal__"}
        return orjson.dumps(product).replace(b'"__literal__"', literal)

    exact_price = with_literal(2, "price", b"0.10000000000000000001")  # a double would read 0.1
    exact_stock = with_literal(4, "stock", b"123456789012345678901234")
    fine_price = with_literal(5, "price", b"1234567890123.25")
    chunk: list[RawItem] = [lines[0], lines[1], exact_price, lines[3], exact_stock, fine_price]
    packed = map_items_packed(chunk, 10, "USD", None)
    mapped = asyncio.run(packed.unpack(chunk, 10, "USD")).items
    alone = [map_item(raw, 10 + offset, "USD") for offset, raw in enumerate(chunk)]
    assert [item.full() if isinstance(item, LazyRow) else item for item in mapped] == alone
    reasons = {item.position: item.reason for item in alone if isinstance(item, ItemError)}
    assert "more than 2 decimal places" in reasons[12]  # not rounded to a double first
    assert 14 in reasons  # a stock past 64 bits
    row = alone[5]
    assert isinstance(row, ProductRow) and row.price_minor == 123456789012325


def _page_faults(pid: int) -> int:
    # The minor faults: each a page the process touched for the first time since the OS gave it.
    return _stat_field(pid, 10)


async def test_a_worker_reuses_its_memory_from_chunk_to_chunk() -> None:
    pool = MappingPool(workers=1)
    mapper = ChunkMapper("USD", pool, process_threshold=1)
    lines = feed_lines(5000)
    try:
        await mapper.map(FeedChunk(lines[:1000], 0, 5000))  # the worker's memory, faulted in once
        fork_servers = [pid for pid in _children(os.getpid()) if b"forkserver" in _cmdline(pid)]
        [worker] = [worker for server in fork_servers for worker in _children(server)]
        before = _page_faults(worker)
        for start in range(1000, 5000, 1000):
            await mapper.map(FeedChunk(lines[start : start + 1000], start, 5000))
        # Given back to the OS after each chunk, the same memory was faulted in again: about one page
        # per product.
        assert (_page_faults(worker) - before) / 4000 < 0.2
    finally:
        pool.close()
