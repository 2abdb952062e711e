"""The DummyJSON-style paged API: ``GET <url>?limit=N&skip=M`` until ``skip >= total``; each page is
retried as a whole (paging is idempotent), and a window of pages is in flight (see page_window.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import msgspec
from pydantic import ValidationError

from service.domain.errors import SyncFailed
from service.settings import Settings
from service.upstream import exact_json
from service.upstream.feed import FeedChunk, OversizeItem, RawItem, ReadProgress, chunk_items
from service.upstream.http import Upstream, raise_for_status
from service.upstream.models import DummyJsonPage, PageRead, RawPage, describe_validation_error
from service.upstream.page_window import PageWindow
from service.upstream.retry import RetryableStatus, RetryPolicy

log = logging.getLogger(__name__)


# How long a short chunk waits for the next page, already on its way, to join it: a page comes in every
# millisecond or so on a fast upstream, and a chunk handed on a little later costs nothing.
_JOIN_WAIT_S = 0.05


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
        self._chunk_size = chunk_items(settings.batch_size)
        self._next_page = (0, self._page_size)  # the page the pager asks for after the one it yielded
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

    async def _fetch_page(self, skip: int, limit: int) -> PageRead:
        where = f"page skip={skip}"
        body, content_type = await self._upstream.policy.call(lambda: self._fetch_body(skip, limit), where)
        return _fast_read(body) or _read(body, content_type, where)

    async def _pages_meet(self, skip: int, ids: list[Any]) -> bool:
        """Whether the two products either side of ``skip`` are, asked for together, the last of the
        previous page and the first of this one (which holds the same ids): always so on a server that
        pages by ``skip``, never on one that answers the same page whatever it is asked (distinct ids)."""
        probe = await self._fetch_page(skip - 1, 2)
        return _ids(probe.products) == [ids[-1], ids[0]]

    async def chunks(self) -> AsyncGenerator[FeedChunk, None]:
        """The pages, joined while the next one is in or comes in within a moment (up to a chunk): a
        chunk costs the mapping workers a round trip of its own, which pages of 100 paid twenty times
        per 2,000 products. A page that is slow to come holds back the ones read before it no longer than
        that moment."""
        try:
            read: list[FeedChunk] = []
            try:
                async for chunk in self._pages():
                    read.append(chunk)
                    short = sum(len(c.items) for c in read) < self._chunk_size
                    if short:
                        await self._window.settled(*self._next_page, _JOIN_WAIT_S)
                    if not short or not self._window.ready(*self._next_page):
                        yield _joined(read)
                        read = []
            except Exception:
                if read:
                    yield _joined(read)  # what was read before the fault is valid: it is written
                raise
            if read:
                yield _joined(read)
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
                self._next_page = (skip + 1, limit)
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
                self._next_page = (skip, limit)
                yield FeedChunk([], skip, total)  # an empty catalog still reports its total
                break
            # A page of exactly the products of the one before may mean the server ignores skip (then
            # products past the first pages would never be read), or a feed that repeats them (then they
            # are item errors: duplicate id). Only pages of two or more distinct ids are suspect (items
            # without one, a page of one item or of one id repeated recur in honest feeds), and ids are
            # read only for such a page: the text is compared first.
            if page.products == previous:
                ids = _ids(page.products)
                if _distinct_ids(ids) and not await self._pages_meet(skip, ids):
                    raise SyncFailed(f"Upstream repeated the previous page ({where})")
            previous = page.products
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
            self._next_page = (skip, limit)
            yield FeedChunk(page.products, skip - returned, total)


_RAW_PAGE = msgspec.json.Decoder(RawPage)


def _fast_read(body: bytes) -> PageRead | None:
    """The page with each product left as the bytes the server sent (parsed only by the mapping, in
    the workers, as an NDJSON line is): parsing a page into objects on the event loop cost more than
    the rest of the service's work per product. None for anything but a plain well-formed page (not
    JSON, a lone surrogate, a count past 64 bits, ...): :func:`_read` then judges it and words why."""
    try:
        if not body.isascii():
            body.decode()  # msgspec does not check the text of values it leaves unparsed
        page = _RAW_PAGE.decode(body)
    except (UnicodeDecodeError, RecursionError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if page.total < 0 or page.skip < 0 or page.limit < 0:
        return None
    products: list[Any] = []
    for raw in page.products:
        text = bytes(raw)
        # An item that is not an object is handed on parsed, to be judged as such (an item error).
        products.append(text if text[:1] == b"{" else exact_json.loads(text))
    return PageRead(products, page.total, page.skip)


def _read(body: bytes, content_type: str, where: str) -> PageRead:
    """Any page: parsed whole (exactly), validated by the envelope's model, with messages that say
    what is wrong with it."""
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
        page = DummyJsonPage.model_validate(parsed)
    except ValidationError as exc:
        problem = f"({where}): {describe_validation_error(exc)}"
        raise SyncFailed(f"Upstream answer is not a DummyJSON products page {problem}") from None
    return PageRead(_as_lines(page.products), page.total, page.skip)


def _joined(chunks: Sequence[FeedChunk]) -> FeedChunk:
    """Consecutive chunks as one (they are in feed order, and share the feed's total)."""
    if len(chunks) == 1:
        return chunks[0]
    return FeedChunk(
        [item for chunk in chunks for item in chunk.items], chunks[0].first_position, chunks[-1].total
    )


def _as_lines(products: Sequence[Any]) -> list[RawItem]:
    """Each product of a page read the slow way as its JSON text, like an NDJSON line: text crosses to
    the mapping workers several times faster than the objects it was parsed into, and is validated
    the same way as on the fast path. An item that cannot be written as JSON is handed on as it is, to
    be its own item error."""
    lines: list[RawItem] = []
    for product in products:
        if isinstance(product, Mapping):
            try:
                lines.append(exact_json.dumps(product))
                continue
            except exact_json.JsonValueError:
                pass
        lines.append(product)
    return lines


def _ids(products: Sequence[Any]) -> list[Any]:
    return [_id_of(item) for item in products]


def _id_of(item: Any) -> Any:
    if isinstance(item, bytes):
        try:
            item = exact_json.loads(item)
        except (ValueError, RecursionError):
            return None
    return item.get("id") if isinstance(item, Mapping) else None


def _distinct_ids(ids: list[Any]) -> bool:
    usable = [value for value in ids if isinstance(value, int | str) and not isinstance(value, bool)]
    return len(usable) == len(ids) >= 2 and len(set(usable)) == len(usable)
