"""The chunk mapper: large feeds are mapped in a real worker process, with the same result as in-process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson

from service.sync.demo_upstream import demo_product
from service.sync.mapping import RawItem, map_items
from service.sync.offload import WORKER_NICENESS, ChunkMapper
from service.sync.sources import FeedChunk


def feed_lines(count: int) -> list[RawItem]:
    lines: list[RawItem] = [orjson.dumps(demo_product(index)) for index in range(count)]
    lines[3] = b'{"id": 4, "title": "no price", "category": "beauty"}'  # an item error
    lines[5] = b"{not json"
    return lines


async def test_a_large_feed_is_mapped_in_a_worker_process_with_the_same_result() -> None:
    lines = feed_lines(300)
    mapper = ChunkMapper("USD", process_threshold=100)
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
        mapper.close()


async def test_a_feed_without_a_total_goes_to_the_worker_process() -> None:
    lines = feed_lines(10)
    mapper = ChunkMapper("EUR")
    try:
        mapped = await mapper.map(FeedChunk(lines, 0, None))
        assert mapper.uses_process
        expected = map_items(lines, 0, "EUR", None)
        assert (mapped.rows, mapped.errors, mapped.total) == (expected.rows, expected.errors, None)
    finally:
        mapper.close()


async def test_a_small_feed_is_mapped_on_the_loop_without_a_process() -> None:
    lines = feed_lines(250)
    mapper = ChunkMapper("USD")
    mapped = await mapper.map(FeedChunk(lines, 0, 194))
    assert not mapper.uses_process
    assert mapped == map_items(lines, 0, "USD", 194)
    mapper.close()


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _niceness(pid: int) -> int:
    # Field 19 of /proc/<pid>/stat; the fields after the parenthesised command name start at 3.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


async def test_the_worker_process_yields_the_cpu_to_the_service() -> None:
    mapper = ChunkMapper("USD", process_threshold=1)
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
        mapper.close()


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_chunks_mapped_by_several_workers_at_once_come_back_in_feed_order() -> None:
    lines = feed_lines(1200)
    mapper = ChunkMapper("USD", workers=2, process_threshold=1)
    try:
        tasks = [
            await mapper.submit(FeedChunk(lines[start : start + 200], start, 1200))
            for start in range(0, 1200, 200)
        ]
        mapped = [await task for task in tasks]
    finally:
        mapper.close()
    assert mapper.workers == 2
    expected = map_items(lines, 0, "USD", 1200)
    assert [row for chunk in mapped for row in chunk.rows] == expected.rows
    assert [error for chunk in mapped for error in chunk.errors] == expected.errors
