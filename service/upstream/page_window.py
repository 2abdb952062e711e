"""Pages asked for ahead of the one being read, so a paged feed is not bound by one round trip a page.

The pager reads pages in feed order as before and asks this window for each. The window has already
started the next ones: those the pager will ask for if each page is as long as the last was (a server
that caps ``limit`` is paged by what it returns). A page asked for that was not started (a short page,
a smaller limit after an oversize page) is fetched then, and the pages started on a path the pager left
are cancelled. At most ``size`` pages are in flight, so memory stays bounded by the window.

On an overloaded answer (429, 5xx) the window halves, down to one page at a time; it grows back by one
after as many good pages as it holds. ``Retry-After`` is honoured by the retry policy of each page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from service.upstream.models import PageRead

FetchPage = Callable[[int, int], Coroutine[Any, Any, PageRead]]


def _retrieve(task: asyncio.Task[PageRead]) -> None:
    # A page started and then left (cancelled, or failed on a path the pager did not take) is nobody's
    # answer: its exception is taken here so asyncio does not report it as never retrieved.
    if not task.cancelled():
        task.exception()


class PageWindow:
    def __init__(self, fetch: FetchPage, size: int) -> None:
        self._fetch = fetch
        self._max = max(1, size)
        self._size = self._max
        self._good_pages = 0
        self._started: dict[tuple[int, int], asyncio.Task[PageRead]] = {}

    @property
    def size(self) -> int:
        return self._size

    async def page(self, skip: int, limit: int) -> PageRead:
        """The page at ``skip`` of ``limit`` products: the one started ahead, or fetched now."""
        task = self._started.pop((skip, limit), None)
        if task is None:
            return await self._fetch(skip, limit)
        return await task

    def ready(self, skip: int, limit: int) -> bool:
        """Whether that page is in, and good: the pager can take it without waiting."""
        task = self._started.get((skip, limit))
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    async def settled(self, skip: int, limit: int, timeout_s: float) -> None:
        """Wait at most ``timeout_s`` for that page to come in (at once if it was not started)."""
        task = self._started.get((skip, limit))
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout_s)

    def ahead(self, skip: int, step: int, limit: int, total: int) -> None:
        """Start the pages the pager will ask for next, from ``skip`` on, ``step`` products apart."""
        wanted = [
            (start, limit) for start in range(skip, min(total, skip + step * self._size), max(1, step))
        ][: self._size]
        for key in list(self._started):
            if key not in wanted:
                self._started.pop(key).cancel()
        for key in wanted:
            if key not in self._started:
                task = asyncio.create_task(self._fetch(*key), name=f"page-skip-{key[0]}")
                task.add_done_callback(_retrieve)
                self._started[key] = task

    def strained(self) -> None:
        """The feed answered 429 or 5xx: fewer pages at once."""
        self._size = max(1, self._size // 2)
        self._good_pages = 0

    def answered(self) -> None:
        """A page came back without a fault: after enough of them, one more page at once."""
        self._good_pages += 1
        if self._size < self._max and self._good_pages >= self._size:
            self._size += 1
            self._good_pages = 0

    async def close(self) -> None:
        """Cancel the pages still in flight and wait for them to end (the run is over, or failed)."""
        tasks = list(self._started.values())
        self._started.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
