"""What a source hands the engine: chunks of raw items, in feed order, and when bytes last arrived."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson


class OversizeItem(NamedTuple):
    """An item the source could not hand over, being over its size limit: ``reason`` says which."""

    reason: str


RawItem = bytes | Mapping[str, Any] | OversizeItem

# Items per chunk at most, whatever the batch: the chunks in flight (raw items, and mapped rows in the
# workers' queues) are most of a sync's memory, while a larger batch saves each item a share of the
# write's fixed cost (figures in docs/benchmarks.md).
MAX_CHUNK_ITEMS = 1000


def chunk_items(batch_size: int) -> int:
    """Items per chunk for batches of ``batch_size``: a batch's worth, up to MAX_CHUNK_ITEMS."""
    return min(batch_size, MAX_CHUNK_ITEMS)


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
    def chunks(self) -> AsyncGenerator[FeedChunk, None]: ...


def upstream_id(raw: RawItem) -> str | None:
    """The item's upstream id as it came (for an error record, or to look its product up), when the item
    is readable enough to have one."""
    if isinstance(raw, OversizeItem):
        return None
    if isinstance(raw, bytes):
        # orjson alone, even though it reads an id past 64 bits as a float (then: no id): this runs for
        # every item of a large feed, to look its product up.
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(raw, Mapping):
        return None
    value = raw.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        return None
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None  # not storable as text: the error record goes without it
    return text
