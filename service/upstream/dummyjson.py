"""The DummyJSON-style paged API: ``GET <url>?limit=N&skip=M`` until ``skip >= total``; each page is
retried as a whole (paging is idempotent), and a window of pages is in flight (see page_window.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from pydantic import ValidationError

from service.domain.errors import SyncFailed
from service.settings import Settings
from service.upstream import exact_json
from service.upstream.feed import FeedChunk, OversizeItem, ReadProgress
from service.upstream.http import Upstream, raise_for_status
from service.upstream.models import DummyJsonPage, describe_validation_error
from service.upstream.page_window import PageWindow
from service.upstream.retry import RetryableStatus, RetryPolicy

log = logging.getLogger(__name__)

# A trickling feed still hands over what it has this often, so progress keeps moving.
_CHUNK_MAX_WAIT_S = 0.5


class _PageTooLarge(Exception):
    """A page's body passed the page limit: it is asked for again with fewer products."""


class DummyJsonSource:
    """Pages through ``{"products": [...], "total": T, "skip": M, "limit": N}`` answers.

    A page may cost at most ``max_page_bytes`` (its body is read up to that and no further), which bounds
    both the memory a page takes and the time its parse holds the event loop. A page over the limit is
    asked for again with half as many products, down to one; a single product over the limit is an item
    error, and the feed goes on after it. The page size grows back after each full page.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        settings: Settings,
        policy: RetryPolicy | None = None,
        progress: ReadProgress | None = None,
    ) -> None:
        self._upstream = Upstream.of(http, url, settings, policy)
        self._page_size = settings.page_size
        self._max_page_bytes = settings.max_page_bytes
        self._progress = progress or ReadProgress()
        self._window = PageWindow(self._fetch_page, settings.page_window)
        # Until when no page may be asked for: a Retry-After is the server's word for every page in
        # flight, not only for the one it answered.
        self._resume_at = 0.0

    async def _fetch_body(self, skip: int, limit: int) -> tuple[bytes, str]:
        """The page's body and its content type; raises _PageTooLarge past the page limit."""
        url = self._upstream.url.update_query(limit=limit, skip=skip)
        where = f"page skip={skip}"
        pause = self._resume_at - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        async with await self._upstream.get(url) as resp:
            try:
                await raise_for_status(resp, where)
            except RetryableStatus as fault:
                self._window.strained()  # asked again by the retry policy, with fewer pages at once
                if fault.retry_after is not None:
                    wait = self._upstream.policy.delay_before(2, fault)  # Retry-After, capped by the policy
                    self._resume_at = max(self._resume_at, time.monotonic() + wait)
                raise
            if resp.content_length is not None and resp.content_length > self._max_page_bytes:
                raise _PageTooLarge()
            body = bytearray()
            async for data in resp.content.iter_any():
                self._progress.touch()
                body += data
                if len(body) > self._max_page_bytes:
                    raise _PageTooLarge()
            return bytes(body), resp.content_type

    async def _fetch_page(self, skip: int, limit: int) -> DummyJsonPage:
        where = f"page skip={skip}"
        body, content_type = await self._upstream.policy.call(lambda: self._fetch_body(skip, limit), where)
        try:
            # Exact where orjson is not (integers past 64 bits, prices with 17 digits), so such a value
            # is judged with its product, as an item, instead of failing the page or being rounded.
            parsed: Any = exact_json.loads(body)
        except RecursionError:
            raise SyncFailed(f"Upstream page is nested too deeply to read ({where})") from None
        except ValueError as exc:
            if "json" not in content_type:  # e.g. an HTML error or maintenance page answered with 200
                where = f"{where}, Content-Type: {content_type}"
            raise SyncFailed(f"Upstream sent invalid JSON ({where}): {exc}") from None
        try:
            return DummyJsonPage.model_validate(parsed)
        except ValidationError as exc:
            problem = f"({where}): {describe_validation_error(exc)}"
            raise SyncFailed(f"Upstream answer is not a DummyJSON products page {problem}") from None

    async def _pages_meet(self, skip: int, previous: list[Any], ids: list[Any]) -> bool:
        """Whether the two products either side of ``skip`` are, asked for together, the last of the
        previous page and the first of this one: always so on a server that pages by ``skip`` (whatever
        its ids), never on one that answers the same page whatever it is asked (distinct ids)."""
        probe = await self._fetch_page(skip - 1, 2)
        return _ids(probe.products) == [previous[-1], ids[0]]

    async def chunks(self) -> AsyncGenerator[FeedChunk, None]:
        try:
            async for chunk in self._pages():
                yield chunk
        finally:
            await self._window.close()

    async def _pages(self) -> AsyncIterator[FeedChunk]:
        skip = 0
        limit = self._page_size
        total: int | None = None
        previous: list[Any] = []
        while total is None or skip < total:
            where = f"page skip={skip}"
            try:
                page = await self._window.page(skip, limit)
            except _PageTooLarge:
                if limit > 1:
                    limit //= 2
                    log.warning(
                        "upstream page over the limit of %d bytes (%s); asking for %d products a page",
                        self._max_page_bytes,
                        where,
                        limit,
                    )
                    continue
                if total is None:  # not one page read yet: nothing says where the feed ends
                    raise SyncFailed(
                        f"The first product alone is larger than the page limit of {self._max_page_bytes}"
                        f" bytes ({where})"
                    ) from None
                oversize = OversizeItem(
                    f"the product is larger than the page limit of {self._max_page_bytes} bytes"
                )
                yield FeedChunk([oversize], skip, total)
                skip += 1
                continue
            if total is not None and page.total != total:
                raise SyncFailed(
                    f"Upstream total changed from {total} to {page.total} during the run ({where})"
                )
            total = page.total
            if page.skip != skip:
                raise SyncFailed(f"Upstream answered skip={page.skip} when asked for skip={skip}")
            if not page.products:
                if skip < total:
                    raise SyncFailed(f"Upstream sent an empty page before reaching total {total} ({where})")
                yield FeedChunk([], skip, total)  # an empty catalog still reports its total
                break
            # A page of the same ids as the one before may mean the server ignores skip (then products
            # past the first pages would never be read), or a feed whose ids repeat (then they are item
            # errors: duplicate id). Only pages of two or more distinct ids are suspect; an item without
            # one, a page of one item or of one id repeated recur in honest feeds.
            ids = _ids(page.products)
            if ids == previous and _distinct_ids(ids) and not await self._pages_meet(skip, previous, ids):
                raise SyncFailed(f"Upstream repeated the previous page ({where})")
            previous = ids
            if skip + len(page.products) > total:
                raise SyncFailed(
                    f"Upstream sent {len(page.products)} products at skip={skip}, past its total of {total}"
                )
            self._window.answered()
            asked, returned = limit, len(page.products)
            skip += returned
            if limit < self._page_size and returned == limit:
                limit = min(self._page_size, limit * 2)  # back towards the configured size
            # The next pages, as long as this one was (a server capping limit is paged by what it sent).
            self._window.ahead(skip, limit if returned == asked else returned, limit, total)
            yield FeedChunk(list(page.products), skip - returned, total)


def _ids(products: Sequence[Any]) -> list[Any]:
    return [item.get("id") if isinstance(item, Mapping) else None for item in products]


def _distinct_ids(ids: list[Any]) -> bool:
    usable = [value for value in ids if isinstance(value, int | str) and not isinstance(value, bool)]
    return len(usable) == len(ids) >= 2 and len(set(usable)) == len(usable)
