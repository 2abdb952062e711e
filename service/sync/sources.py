"""Upstream feeds as async iterators of chunks, all through the run's one ``aiohttp.ClientSession``.

- DummyJSON-style paged API: ``GET <url>?limit=N&skip=M`` until ``skip >= total``; each page is retried
  as a whole (paging is idempotent).
- NDJSON: one product per line, read as it arrives; only opening the response is retried, because a
  stream broken in the middle cannot be resumed.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
from pydantic import ValidationError
from yarl import URL

from service.settings import Settings
from service.sync.job import SyncFailed
from service.sync.mapping import RawItem, describe_validation_error
from service.sync.models import DummyJsonPage
from service.sync.retry import RetryableStatus, RetryPolicy, is_retryable_status, parse_retry_after

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


def redact_url(url: str) -> str:
    """scheme://host:port/path, without credentials or query (they may hold secrets), for logs."""
    parsed = URL(url)
    return str(parsed.with_user(None).with_query(None).with_fragment(None))


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


class DummyJsonSource:
    """Pages through ``{"products": [...], "total": T, "skip": M, "limit": N}`` answers."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        settings: Settings,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._upstream = _Upstream.of(http, url, settings, policy)
        self._page_size = settings.page_size
        # A page is bounded like NDJSON lines: max_line_bytes per product, so a hostile or broken
        # upstream cannot make the service buffer an answer of any size.
        self._max_page_bytes = settings.page_size * settings.max_line_bytes

    async def _fetch_body(self, skip: int) -> tuple[bytes, str]:
        """The page's body and its content type; a body over the page limit fails the run."""
        url = self._upstream.url.update_query(limit=self._page_size, skip=skip)
        where = f"page skip={skip}"
        async with await self._upstream.get(url) as resp:
            await _raise_for_status(resp, where)
            too_large = SyncFailed(
                f"Upstream page is larger than the limit of {self._max_page_bytes} bytes ({where})"
            )
            if resp.content_length is not None and resp.content_length > self._max_page_bytes:
                raise too_large
            body = bytearray()
            async for data in resp.content.iter_any():
                body += data
                if len(body) > self._max_page_bytes:
                    raise too_large
            return bytes(body), resp.content_type

    async def _fetch_page(self, skip: int) -> DummyJsonPage:
        where = f"page skip={skip}"
        body, content_type = await self._upstream.policy.call(lambda: self._fetch_body(skip), where)
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
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
        total: int | None = None
        previous_ids: list[Any] | None = None
        while total is None or skip < total:
            page = await self._fetch_page(skip)
            where = f"page skip={skip}"
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
            ids = [item.get("id") if isinstance(item, Mapping) else None for item in page.products]
            if ids == previous_ids:
                raise SyncFailed(f"Upstream repeated the previous page ({where})")
            previous_ids = ids
            if skip + len(page.products) > total:
                raise SyncFailed(
                    f"Upstream sent {len(page.products)} products at skip={skip}, past its total of {total}"
                )
            yield FeedChunk(list(page.products), skip, total)
            skip += len(page.products)


class NdjsonSource:
    """``application/x-ndjson``: one product per line, split as bytes arrive, never the whole body."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        settings: Settings,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._upstream = _Upstream.of(http, url, settings, policy)
        self._chunk_size = settings.batch_size
        self._max_line = settings.max_line_bytes

    async def _open(self) -> aiohttp.ClientResponse:
        resp = await self._upstream.get()
        try:
            await _raise_for_status(resp, "opening the feed")
        except BaseException:
            resp.release()
            raise
        return resp

    def _too_long(self, line_number: int) -> SyncFailed:
        return SyncFailed(f"Feed line {line_number} is longer than the limit of {self._max_line} bytes")

    async def chunks(self) -> AsyncIterator[FeedChunk]:
        resp = await self._upstream.policy.call(self._open, "opening the feed")
        async with resp:
            total = _announced_total(resp)
            line_number = 0  # 1-based number of the last complete line
            position = 0  # 0-based position of the next item (blank lines are not items)
            items: list[RawItem] = []
            first_position = 0
            pending = b""
            last_yield = time.monotonic()
            try:
                async for data in resp.content.iter_any():
                    lines = (pending + data).split(b"\n") if pending else data.split(b"\n")
                    pending = lines.pop()
                    if len(pending) > self._max_line:
                        raise self._too_long(line_number + len(lines) + 1)
                    # Whole-block operations (C loops), not a Python loop per line: this runs on the loop.
                    if lines and max(map(len, lines)) > self._max_line:
                        first_long = next(i for i, line in enumerate(lines) if len(line) > self._max_line)
                        raise self._too_long(line_number + first_long + 1)
                    line_number += len(lines)
                    kept = list(filter(bytes.strip, lines))  # strip() of a clean line is the line itself
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


def _announced_total(resp: aiohttp.ClientResponse) -> int | None:
    value = resp.headers.get("X-Total-Count", "")
    return int(value) if value.isdigit() else None


def source_for(settings: Settings, http: aiohttp.ClientSession, url: str) -> Source:
    if settings.source_format == "ndjson":
        return NdjsonSource(http, url, settings)
    return DummyJsonSource(http, url, settings)
