"""Mapped rows crossing from a mapping worker process to the service, and the worker's side of it.

The worker (:func:`map_items_packed`) first asks the sink's fingerprint lookup
(:meth:`CatalogSink.unchanged_lookup`) for the chunk's products: an item received exactly as last time
is not validated or mapped again, and only its key crosses. The other rows are serialised in slices of
plain tuples; the service loads a slice only when the sink needs one of its rows in full (a new or
changed product).
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from service.catalog.mapping import MappedChunk, MappedRow, ProductRow, map_item, new_product_row, source_hash
from service.catalog.sink import FingerprintLookup, StoredFingerprints
from service.domain.outcomes import ItemError
from service.transport.pacing import give_way
from service.upstream import exact_json
from service.upstream.feed import RawItem, upstream_id

# Rows per payload: the service loads one slice at a time, a short stretch on the event loop (a whole
# chunk at once is several ms there), and only the slices holding a new or changed row.
PACKED_SLICE = 250
# Keys turned into rows per turn of the event loop.
UNPACK_SLICE = 250
# The slot of a row the worker did not map (its item is unchanged since the last sync).
NOT_MAPPED = -1


class _ChunkRows:
    """The rows of one chunk: the mapped ones serialised in slices, loaded here on use.

    Keeps the chunk's items, to map on the event loop a row the worker skipped as unchanged if the sink
    finds it changed after all (its product was changed by someone else since the worker read it).
    """

    __slots__ = ("_currency", "_first_position", "_items", "_payloads", "_slices")

    def __init__(
        self, payloads: list[bytes], items: Sequence[RawItem], first_position: int, currency: str
    ) -> None:
        self._payloads = payloads
        self._slices: dict[int, list[tuple[Any, ...]]] = {}
        self._items = items
        self._first_position = first_position
        self._currency = currency

    def row(self, slot: int, position: int) -> ProductRow:
        if slot == NOT_MAPPED:
            return self._map_here(position)
        which, offset = divmod(slot, PACKED_SLICE)
        rows = self._slices.get(which)
        if rows is None:
            rows = self._slices[which] = marshal.loads(self._payloads[which])
            self._payloads[which] = b""
        return new_product_row(rows[offset])

    def _map_here(self, position: int) -> ProductRow:
        row = map_item(self._items[position - self._first_position], position, self._currency)
        if isinstance(row, ItemError):
            # The item mapped before with the same mapping version: only a code change without a
            # MAPPING_VERSION bump gets here.
            raise RuntimeError(f"item at position {position} no longer maps: {row.reason}")
        return row


class LazyRow(NamedTuple):
    """What the sink compares first (id, hashes); the full row is made only for a new or changed product.

    An identical re-sync then never loads its rows (about 1 KiB of strings each) in the service.
    """

    position: int
    external_id: str
    content_hash: int
    source_hash: int
    # A field, not a property computed from the slot: the sink reads it for every row of a batch.
    unchanged_when_read: bool
    source: _ChunkRows
    slot: int  # its index in the chunk's serialised rows, or NOT_MAPPED

    def full(self) -> ProductRow:
        return self.source.row(self.slot, self.position)


# (position, external id, content hash, source hash, slot) per row, in feed order.
_Key = tuple[int, str, int, int, int]


@dataclass(frozen=True, slots=True)
class PackedChunk:
    """A mapped chunk as the worker process returns it: the rows' keys, and the mapped rows serialised.

    ``keys`` is None for a chunk mapped without a lookup (the catalog was empty when the run began):
    the sink then needs every row in full, so the rows are unpacked as they are, without keys.
    """

    keys: list[_Key] | None
    errors: list[ItemError]
    payloads: list[bytes]  # the mapped rows, PACKED_SLICE plain tuples per payload (marshal)
    total: int | None
    skipped: int  # rows not mapped (unchanged since the last sync)

    async def unpack(self, items: Sequence[RawItem], first_position: int, currency: str) -> MappedChunk:
        """The chunk for the sink; ``items`` etc. are what was sent to the worker.

        Runs on the event loop, so in slices: a whole chunk at once held the loop for milliseconds
        during a large sync, and every status poll in flight waited for it.
        """
        mapped: list[MappedRow | ItemError] = []
        if self.keys is None:
            for index, payload in enumerate(self.payloads):
                if index:
                    await give_way()
                # map() over a C-level constructor: no Python step per row of a fresh sync.
                mapped.extend(map(new_product_row, marshal.loads(payload)))
        else:
            # The items are kept only if the worker skipped some: to map one here if the sink needs it.
            source = _ChunkRows(self.payloads, items if self.skipped else (), first_position, currency)
            new = tuple.__new__  # not LazyRow(...): its Python-level constructor is the slower, per row
            for start in range(0, len(self.keys), UNPACK_SLICE):
                if start:
                    await give_way()
                keys = self.keys[start : start + UNPACK_SLICE]
                mapped.extend(
                    [new(LazyRow, (*key[:4], key[4] == NOT_MAPPED, source, key[4])) for key in keys]
                )
        if self.errors:
            mapped.extend(self.errors)
            mapped.sort(key=lambda item: item.position)
        return MappedChunk(mapped, self.total)


def map_items_packed(
    items: Sequence[RawItem],
    first_position: int,
    currency: str,
    total: int | None,
    lookup: FingerprintLookup | None = None,
) -> PackedChunk:
    """Map a chunk in the worker process; the service gets a :class:`MappedChunk` from ``unpack()``.

    With ``lookup`` (from the sink), items unchanged since the last sync are not mapped again.
    """
    ids = [_lookup_id(raw) for raw in items] if lookup is not None else [None] * len(items)
    stored = _stored_fingerprints(lookup, ids) if lookup is not None else [None] * len(items)
    keys: list[_Key] | None = [] if lookup is not None else None  # no keys without a lookup: see PackedChunk
    errors: list[ItemError] = []
    rows: list[tuple[Any, ...]] = []
    skipped = 0
    may_need_exact: bool | None = None  # looked up once the chunk has an item to map
    for offset, (raw, external_id, known) in enumerate(zip(items, ids, stored, strict=True)):
        position = first_position + offset
        if (
            known is not None
            and known.source_hash is not None
            and source_hash(raw, currency) == known.source_hash
        ):
            assert external_id is not None  # only an item with an id has stored fingerprints
            assert keys is not None  # stored fingerprints come from a lookup
            keys.append((position, external_id, known.content_hash, known.source_hash, NOT_MAPPED))
            skipped += 1
            continue
        if may_need_exact is None:
            # One look over the whole chunk for numbers a double may not hold, instead of one per item
            # (a few µs each): almost every chunk has none. Lines apart, so no digits run from one item
            # into the next.
            may_need_exact = exact_json.needs_exact_parse(
                b"\n".join(raw for raw in items if isinstance(raw, bytes))
            )
        item = map_item(raw, position, currency, may_need_exact=may_need_exact)
        if isinstance(item, ItemError):
            errors.append(item)
            continue
        if keys is not None:
            keys.append((position, item.external_id, item.content_hash, item.source_hash, len(rows)))
        rows.append(tuple(item))  # plain: marshal writes tuples of text and numbers, not named tuples
    # marshal rather than pickle: it writes tuples of text and numbers in about half the time, and loads
    # them as fast. Its format belongs to the interpreter, which the workers share with the service.
    slices = range(0, len(rows), PACKED_SLICE)
    payloads = [marshal.dumps(rows[start : start + PACKED_SLICE]) for start in slices]
    return PackedChunk(keys, errors, payloads, total, skipped)


_PLAIN_ID_FIRST = b'{"id":'
_PLAIN_ID_AT = len(_PLAIN_ID_FIRST)


def _lookup_id(raw: RawItem) -> str | None:
    """The id to look the item's stored fingerprints up by. A line that starts with a plain integer id
    (``{"id":123,``, as nearly every feed's items do) gives it from those bytes, without parsing the
    rest of the line (most of an identical re-sync's work per item otherwise); anything else goes
    through :func:`upstream_id`. A wrong id here (a later duplicate "id" key wins in JSON) only misses:
    the product it names was not stored from this line, so its source hash differs and the item is
    mapped."""
    if isinstance(raw, bytes) and raw.startswith(_PLAIN_ID_FIRST):
        end = raw.find(b",", _PLAIN_ID_AT)
        digits = raw[_PLAIN_ID_AT:end] if end > 0 else b""
        if 0 < len(digits) <= 18 and digits.isdigit() and (digits[:1] != b"0" or len(digits) == 1):
            return digits.decode()
    return upstream_id(raw)


def lookup_ids(items: Sequence[RawItem]) -> list[str]:
    """The ids a chunk's items are looked up by (those that have one)."""
    return [external_id for raw in items if (external_id := _lookup_id(raw)) is not None]


@dataclass(frozen=True, slots=True)
class PrefetchedFingerprints:
    """A lookup answered from fingerprints read beforehand (for a whole chunk, off the event loop)."""

    found: Mapping[str, StoredFingerprints]

    def __call__(self, external_ids: Sequence[str]) -> Mapping[str, StoredFingerprints]:
        return {
            external_id: self.found[external_id] for external_id in external_ids if external_id in self.found
        }


def _stored_fingerprints(
    lookup: FingerprintLookup, ids: Sequence[str | None]
) -> list[StoredFingerprints | None]:
    """Each item's stored fingerprints (None for an item whose product the store does not hold)."""
    wanted = [external_id for external_id in ids if external_id is not None]
    if not wanted:
        return [None] * len(ids)
    found = lookup(wanted)
    return [found.get(external_id) if external_id is not None else None for external_id in ids]
