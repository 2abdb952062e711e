"""NDJSON: one product per line, read as it arrives; only opening the response is retried, because a
stream broken in the middle cannot be resumed."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

import aiohttp

from service.domain.errors import SyncFailed
from service.settings import Settings
from service.upstream.feed import FeedChunk, OversizeItem, RawItem, ReadProgress, chunk_items
from service.upstream.http import Upstream, raise_for_status
from service.upstream.retry import RetryPolicy

log = logging.getLogger(__name__)

# A trickling feed still hands over what it has this often, so progress keeps moving.
_CHUNK_MAX_WAIT_S = 0.5


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
        self._upstream = Upstream.of(http, url, settings, policy)
        self._chunk_size = chunk_items(settings.batch_size)
        self._max_line = settings.max_line_bytes
        self._progress = progress or ReadProgress()

    async def _open(self) -> aiohttp.ClientResponse:
        resp = await self._upstream.get()
        try:
            await raise_for_status(resp, "opening the feed")
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

    async def chunks(self) -> AsyncGenerator[FeedChunk, None]:
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
