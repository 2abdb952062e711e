"""Upstream feeds as async iterators of chunks, all through the run's one ``aiohttp.ClientSession``.

- DummyJSON-style paged API: ``GET <url>?limit=N&skip=M`` until ``skip >= total``; each page is retried
  as a whole (paging is idempotent).
- NDJSON: one product per line, read as it arrives; only opening the response is retried, because a
  stream broken in the middle cannot be resumed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from pydantic import ValidationError
from yarl import URL

from service.settings import Settings
from service.sync import exact_json
from service.sync.job import SyncFailed
from service.sync.mapping import OversizeItem, RawItem, describe_validation_error
from service.sync.models import DummyJsonPage
from service.sync.retry import RetryableStatus, RetryPolicy, is_retryable_status, parse_retry_after

log = logging.getLogger(__name__)

_HEADER_LINE = re.compile(r"^([A-Za-z0-9!#$%&'*+.^_`|~-]+):\s*(.+)$")
_SNIPPET = 200
# A trickling feed still hands over what it has this often, so progress keeps moving.
_CHUNK_MAX_WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class FeedChunk:
    """Consecutive raw items of the feed: parsed objects (DummyJSON) or undecoded lines (NDJSON)."""

    items: list[RawItem]
    first_position: int  # 0-based position of items[0] in the feed
    total: int | None  # how many items the feed announced, when it did


@dataclass
class ReadProgress:
    """When the source last received bytes: a feed that trickles is slow, not stalled."""

    last_read_at: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_read_at = time.monotonic()


class Source(Protocol):
    def chunks(self) -> AsyncIterator[FeedChunk]: ...


def upstream_headers(settings: Settings) -> dict[str, str]:
    """Extra headers plus the auth header: ``Name: value``, or a bare value sent as ``Authorization``."""
    headers = dict(settings.source_headers)
    if settings.source_auth_header is not None:
        secret = settings.source_auth_header.get_secret_value().strip()
        match = _HEADER_LINE.match(secret)
        if match and " " not in match[1]:
            headers[match[1]] = match[2]
        else:
            headers["Authorization"] = secret
    return headers


def request_timeout(settings: Settings) -> aiohttp.ClientTimeout:
    # No total per request: a long NDJSON stream is bounded by the run timeout, not a request timeout.
    return aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=settings.connect_timeout_s, sock_read=settings.read_timeout_s
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.retry_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s)


async def _raise_for_status(resp: aiohttp.ClientResponse, where: str) -> None:
    if resp.status == 200:
        return
    if is_retryable_status(resp.status):
        raise RetryableStatus(resp.status, parse_retry_after(resp.headers.get("Retry-After")))
    body = (await resp.content.read(_SNIPPET)).decode("utf-8", "replace").strip()
    detail = f": {body}" if body else ""
    raise SyncFailed(f"Upstream answered {resp.status} {resp.reason or ''}".rstrip() + f" ({where}){detail}")


@dataclass(frozen=True)
class _Upstream:
    """What every request to the feed carries: the session, URL, headers, timeouts and retry policy."""

    http: aiohttp.ClientSession
    url: URL
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout
    policy: RetryPolicy

    @classmethod
    def of(
        cls, http: aiohttp.ClientSession, url: str, settings: Settings, policy: RetryPolicy | None
    ) -> _Upstream:
        return cls(
            http,
            URL(url),
            upstream_headers(settings),
            request_timeout(settings),
            policy or retry_policy(settings),
        )

    async def get(self, url: URL | None = None) -> aiohttp.ClientResponse:
        """GET ``url`` (default: the feed's own); the caller releases the response (``async with``)."""
        return await self.http.get(url or self.url, headers=self.headers, timeout=self.timeout)


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
        self._upstream = _Upstream.of(http, url, settings, policy)
        self._page_size = settings.page_size
        self._max_page_bytes = settings.max_page_bytes
        self._progress = progress or ReadProgress()

    async def _fetch_body(self, skip: int, limit: int) -> tuple[bytes, str]:
        """The page's body and its content type; raises _PageTooLarge past the page limit."""
        url = self._upstream.url.update_query(limit=limit, skip=skip)
        where = f"page skip={skip}"
        async with await self._upstream.get(url) as resp:
            await _raise_for_status(resp, where)
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

    async def chunks(self) -> AsyncIterator[FeedChunk]:
        skip = 0
        limit = self._page_size
        total: int | None = None
        previous: list[Any] = []
        while total is None or skip < total:
            where = f"page skip={skip}"
            try:
                page = await self._fetch_page(skip, limit)
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
            # A page of the same ids as the one before means the server ignores skip. Only told from
            # pages of two or more distinct ids: items without one, a page of one item or of one id
            # repeated may recur in an honest feed (they are then item errors: missing or duplicate
            # id), and paging ends at the total whatever the server does.
            ids = [item.get("id") if isinstance(item, Mapping) else None for item in page.products]
            if ids == previous and _distinct_ids(ids):
                raise SyncFailed(f"Upstream repeated the previous page ({where})")
            previous = ids
            if skip + len(page.products) > total:
                raise SyncFailed(
                    f"Upstream sent {len(page.products)} products at skip={skip}, past its total of {total}"
                )
            yield FeedChunk(list(page.products), skip, total)
            skip += len(page.products)
            if limit < self._page_size and len(page.products) == limit:
                limit = min(self._page_size, limit * 2)  # back towards the configured size


def _distinct_ids(ids: list[Any]) -> bool:
    usable = [value for value in ids if isinstance(value, int | str) and not isinstance(value, bool)]
    return len(usable) == len(ids) >= 2 and len(set(usable)) == len(usable)


# Content types that are a page for people, not a feed: an error or login page answered with 200.
_NOT_A_FEED = ("text/html", "application/xhtml+xml", "text/xml", "application/xml")


class NdjsonSource:
    """``application/x-ndjson``: one product per line, split as bytes arrive, never the whole body.

    A line longer than ``max_line_bytes`` is an item error: its bytes are dropped as they arrive, up to
    its end, and the feed goes on with the next line.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        settings: Settings,
        policy: RetryPolicy | None = None,
        progress: ReadProgress | None = None,
    ) -> None:
        self._upstream = _Upstream.of(http, url, settings, policy)
        self._chunk_size = settings.batch_size
        self._max_line = settings.max_line_bytes
        self._progress = progress or ReadProgress()

    async def _open(self) -> aiohttp.ClientResponse:
        resp = await self._upstream.get()
        try:
            await _raise_for_status(resp, "opening the feed")
            if resp.content_type in _NOT_A_FEED:
                raise SyncFailed(
                    f"Upstream answered a {resp.content_type} page, not an NDJSON feed (opening the feed)"
                )
        except BaseException:
            resp.release()
            raise
        return resp

    def _too_long(self, line_number: int) -> OversizeItem:
        return OversizeItem(f"Feed line {line_number} is longer than the limit of {self._max_line} bytes")

    def _items_of(self, lines: list[bytes], line_number: int) -> list[RawItem]:
        """The items of complete lines (blank ones dropped); ``line_number`` is the line before them."""
        # Whole-block operations (C loops), not a Python loop per line: this runs on the event loop.
        if not lines or max(map(len, lines)) <= self._max_line:
            return [*filter(bytes.strip, lines)]  # strip() of a clean line is the line itself
        return [
            self._too_long(line_number + offset + 1) if len(line) > self._max_line else line
            for offset, line in enumerate(lines)
            if line.strip()
        ]

    async def chunks(self) -> AsyncIterator[FeedChunk]:
        resp = await self._upstream.policy.call(self._open, "opening the feed")
        async with resp:
            total = _announced_total(resp)
            line_number = 0  # 1-based number of the last complete line
            position = 0  # 0-based position of the next item (blank lines are not items)
            items: list[RawItem] = []
            first_position = 0
            pending = b""
            dropping = False  # inside an over-long line, whose bytes are dropped up to its end
            checked_start = False
            last_yield = time.monotonic()
            try:
                async for data in resp.content.iter_any():
                    self._progress.touch()
                    if dropping:
                        end = data.find(b"\n")
                        if end < 0:
                            continue
                        data, dropping = data[end + 1 :], False
                        line_number += 1
                    if not checked_start and data.strip():
                        _check_feed_start(data)
                        checked_start = True
                    lines = (pending + data).split(b"\n") if pending else data.split(b"\n")
                    pending = lines.pop()
                    kept = self._items_of(lines, line_number)
                    line_number += len(lines)
                    if len(pending) > self._max_line:
                        kept.append(self._too_long(line_number + 1))
                        pending, dropping = b"", True
                    items.extend(kept)
                    position += len(kept)
                    now = time.monotonic()
                    if items and (len(items) >= self._chunk_size or now - last_yield >= _CHUNK_MAX_WAIT_S):
                        yield FeedChunk(items, first_position, total)
                        items, first_position, last_yield = [], position, now
            except TimeoutError:
                raise SyncFailed(f"Network timeout while reading the feed after line {line_number}") from None
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                raise SyncFailed(
                    f"Upstream connection broke while reading the feed after line {line_number}: {exc}"
                ) from None
            if pending.strip():
                items.append(pending)
            if items:
                yield FeedChunk(items, first_position, total)


def _check_feed_start(start: bytes) -> None:
    """A feed that starts with markup is a web page (served with a JSON or no content type)."""
    if start.lstrip()[:1] == b"<":
        raise SyncFailed(
            "Upstream answered a markup page, not an NDJSON feed (its first line starts with '<')"
        )


def _announced_total(resp: aiohttp.ClientResponse) -> int | None:
    value = resp.headers.get("X-Total-Count", "")
    return int(value) if value.isdigit() else None


def source_for(
    settings: Settings, http: aiohttp.ClientSession, url: str, progress: ReadProgress | None = None
) -> Source:
    if settings.source_format == "ndjson":
        return NdjsonSource(http, url, settings, progress=progress)
    return DummyJsonSource(http, url, settings, progress=progress)
