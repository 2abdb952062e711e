"""Pure mapping from an upstream item to a catalog row (or an item error). No I/O, safe in a worker thread."""

from __future__ import annotations

import hashlib
import pickle
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from service.ledger.runs import ItemError
from service.sync.models import UpstreamProduct

# ISO 4217 currencies whose minor unit is not the cent; every other code uses 2 decimals.
_MINOR_DIGITS = {
    "BHD": 3,
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}
_MAX_MINOR = 2**63 - 1
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_MAX_REASON = 500

RawItem = bytes | Mapping[str, Any]


class ProductRow(NamedTuple):
    """One product ready for the catalog. ``handle_base`` is the title's slug and ``handle_with_id`` the
    fallback with the external id; the sink picks a unique one (both are made here, off the event loop).

    A named tuple rather than a dataclass: rows cross from the mapping worker process in bulk, and a
    tuple pickles and unpickles several times faster.
    """

    position: int
    external_id: str
    handle_base: str
    handle_with_id: str
    title: str
    description: str
    category_handle: str
    category_name: str
    price_minor: int
    currency: str
    brand: str | None
    sku: str | None
    stock: int | None
    thumbnail: str | None
    images: str  # JSON array
    tags: str  # JSON array
    metadata: str  # JSON object of the upstream fields not mapped to a column
    content_hash: int

    def full(self) -> ProductRow:
        return self


# Rows per pickle in a packed chunk: the service unpickles one slice at a time, a short stretch on the
# event loop (a whole chunk at once is several ms there), and only the slices holding a changed row.
PACKED_SLICE = 250


class _ChunkRows:
    """The full rows of one chunk mapped in the worker: pickled there in slices, unpickled here on use."""

    __slots__ = ("_payloads", "_slices")

    def __init__(self, payloads: list[bytes]) -> None:
        self._payloads = payloads
        self._slices: dict[int, list[ProductRow]] = {}

    def row(self, index: int) -> ProductRow:
        which, offset = divmod(index, PACKED_SLICE)
        rows = self._slices.get(which)
        if rows is None:
            rows = self._slices[which] = pickle.loads(self._payloads[which])
            self._payloads[which] = b""
        return rows[offset]


class LazyRow(NamedTuple):
    """What the sink compares first (id, hash); the full row is unpickled only for a new or changed product.

    An identical re-sync then never unpickles its rows (about 1 KiB of strings each) in the main process.
    """

    position: int
    external_id: str
    content_hash: int
    source: _ChunkRows
    slot: int  # its index in the chunk's rows

    def full(self) -> ProductRow:
        return self.source.row(self.slot)


MappedRow = ProductRow | LazyRow


@dataclass(frozen=True, slots=True)
class PackedChunk:
    """A mapped chunk as the worker process returns it: the rows' keys, and the full rows in one pickle."""

    keys: list[tuple[int, str, int]]  # (position, external id, content hash) per row
    errors: list[ItemError]
    payloads: list[bytes]  # the full rows, PACKED_SLICE per pickle
    total: int | None

    def unpack(self) -> MappedChunk:
        source = _ChunkRows(self.payloads)
        items: list[MappedRow | ItemError] = [
            LazyRow(position, external_id, fingerprint, source, index)
            for index, (position, external_id, fingerprint) in enumerate(self.keys)
        ]
        if self.errors:
            items.extend(self.errors)
            items.sort(key=lambda item: item.position)
        return MappedChunk(items, self.total)


@dataclass(frozen=True, slots=True)
class MappedChunk:
    items: list[MappedRow | ItemError]  # in feed order
    total: int | None

    @property
    def rows(self) -> list[ProductRow]:
        return [item.full() for item in self.items if not isinstance(item, ItemError)]

    @property
    def errors(self) -> list[ItemError]:
        return [item for item in self.items if isinstance(item, ItemError)]

    @property
    def processed(self) -> int:
        return len(self.items)


class MappingError(ValueError):
    """A valid upstream item that cannot become a catalog row (e.g. a price finer than the currency)."""


def slugify(text: str) -> str:
    """ASCII slug: accents folded, everything else that is not a letter or digit becomes one dash."""
    # ASCII text is its own NFKD form: skip the Unicode round trip for the common case.
    folded = (
        text
        if text.isascii()
        else unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    )
    return _NOT_SLUG.sub("-", folded.lower()).strip("-")


def minor_digits(currency: str) -> int:
    return _MINOR_DIGITS.get(currency.upper(), 2)


def to_minor_units(price: Decimal, currency: str) -> int:
    """Exact conversion to integer minor units; a price that would need rounding is refused, not rounded."""
    digits = minor_digits(currency)
    scaled = price.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise MappingError(f"price {price} has more than {digits} decimal places for {currency}")
    minor = int(scaled)
    if minor > _MAX_MINOR:
        raise MappingError(f"price {price} is too large")
    return minor


def content_hash(parts: Sequence[Any]) -> int:
    """A stable 63-bit fingerprint of the content fields (fits SQLite's signed 64-bit INTEGER)."""
    digest = hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def map_product(product: UpstreamProduct, position: int, currency: str) -> ProductRow:
    category_handle = slugify(product.category)
    if not category_handle:
        raise MappingError(f"category {product.category!r} has no letters or digits to make a handle from")
    price_minor = to_minor_units(product.price, currency)
    images = orjson.dumps(product.images).decode()
    tags = orjson.dumps(product.tags).decode()
    metadata = orjson.dumps(product.extras, option=orjson.OPT_SORT_KEYS).decode()
    fingerprint = content_hash(
        [
            product.title,
            product.description,
            category_handle,
            product.category,
            price_minor,
            currency,
            product.brand,
            product.sku,
            product.stock,
            product.thumbnail,
            images,
            tags,
            metadata,
        ]
    )
    handle_base = slugify(product.title) or "product"
    return ProductRow(
        position=position,
        external_id=product.external_id,
        handle_base=handle_base,
        handle_with_id=f"{handle_base}-{slugify(product.external_id) or 'id'}",
        title=product.title,
        description=product.description,
        category_handle=category_handle,
        category_name=product.category,
        price_minor=price_minor,
        currency=currency,
        brand=product.brand,
        sku=product.sku,
        stock=product.stock,
        thumbnail=product.thumbnail,
        images=images,
        tags=tags,
        metadata=metadata,
        content_hash=fingerprint,
    )


def map_item(raw: RawItem, position: int, currency: str) -> ProductRow | ItemError:
    """Validate and map one item: a parsed JSON object (DummyJSON) or one NDJSON line (bytes)."""
    try:
        if isinstance(raw, bytes):
            product = UpstreamProduct.model_validate_json(raw)
        else:
            product = UpstreamProduct.model_validate(raw)
        return map_product(product, position, currency)
    except ValidationError as exc:
        return ItemError(position, _upstream_id(raw), _shorten(describe_validation_error(exc)))
    except MappingError as exc:
        return ItemError(position, _upstream_id(raw), _shorten(str(exc)))


def map_items(items: Sequence[RawItem], first_position: int, currency: str, total: int | None) -> MappedChunk:
    return MappedChunk(
        [map_item(raw, first_position + offset, currency) for offset, raw in enumerate(items)], total
    )


def map_items_packed(
    items: Sequence[RawItem], first_position: int, currency: str, total: int | None
) -> PackedChunk:
    """:func:`map_items` for the worker process; the caller gets a :class:`MappedChunk` from ``unpack()``."""
    rows: list[ProductRow] = []
    errors: list[ItemError] = []
    for item in map_items(items, first_position, currency, total).items:
        if isinstance(item, ItemError):
            errors.append(item)
        else:
            rows.append(item.full())
    keys = [(row.position, row.external_id, row.content_hash) for row in rows]
    payloads = [
        pickle.dumps(rows[start : start + PACKED_SLICE], pickle.HIGHEST_PROTOCOL)
        for start in range(0, len(rows), PACKED_SLICE)
    ]
    return PackedChunk(keys, errors, payloads, total)


def describe_validation_error(exc: ValidationError) -> str:
    """``title: Field required; price: Input should be greater than or equal to 0``."""
    parts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == "json_invalid":
            parts.append(f"invalid JSON: {error['ctx']['error'] if 'ctx' in error else error['msg']}")
            continue
        location = ".".join(str(part) for part in error["loc"])
        parts.append(f"{location}: {error['msg']}" if location else str(error["msg"]))
    return "; ".join(parts)


def _upstream_id(raw: RawItem) -> str | None:
    """The item's upstream id for the error record, when the item is readable enough to have one."""
    if isinstance(raw, bytes):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(raw, Mapping):
        return None
    value = raw.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        return None
    return str(value)


def _shorten(reason: str) -> str:
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"
