"""Pure mapping from an upstream item to a catalog row (or an item error). No I/O, safe in a worker thread."""

from __future__ import annotations

import functools
import hashlib
import logging
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, getcontext, localcontext
from typing import Any, NamedTuple, Protocol

import orjson
from anyascii import anyascii
from pydantic import ValidationError

from service.domain.outcomes import ItemError
from service.upstream import exact_json
from service.upstream.feed import OversizeItem, RawItem, upstream_id
from service.upstream.models import UpstreamProduct, describe_validation_error
from service.upstream.plain_items import plain_product

log = logging.getLogger(__name__)

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
_MAX_MINOR_DIGITS = len(str(_MAX_MINOR))
# Every byte but a lowercase letter or a digit becomes a space; the slug is then the words between the
# spaces, joined by dashes. bytes.translate and split are C loops: a regular expression took 4 times as long.
_SLUG_BYTES = bytes(
    byte if chr(byte) in string.ascii_lowercase + string.digits else ord(" ") for byte in range(256)
)
_MAX_REASON = 500
# Scripts whose characters are each a syllable or a word: their transliterations are kept apart, so that
# 家电 gives "jia-dian" rather than "jiadian".
_WORD_CHARACTERS = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HANGUL SYLLABLE")


class ProductRow(NamedTuple):
    """One product ready for the catalog. ``handle_base`` is the title's slug and ``handle_with_id`` the
    fallback with the external id; the sink's statements pick a unique one.

    The first :data:`STATEMENT_VALUES` fields are, in this order, the parameters ``?1`` to ``?17`` of the
    sink's INSERT and UPDATE: a row's parameters are one slice of it, with no per-field Python work.

    A named tuple rather than a dataclass: rows cross from the mapping worker process in bulk, and a
    tuple is serialised and loaded several times faster.
    """

    external_id: str
    handle_base: str
    handle_with_id: str
    title: str
    description: str
    category_handle: str
    price_minor: int
    currency: str
    brand: str | None
    sku: str | None
    stock: int | None
    thumbnail: str | None
    images: str  # JSON array
    tags: str  # JSON array
    metadata: str  # JSON object of the upstream fields not mapped to a column
    content_hash: int  # of the mapped content: tells a changed product from an unchanged one
    source_hash: int  # of the upstream item as received (see source_hash())
    category_name: str
    position: int

    def full(self) -> ProductRow:
        return self

    @property
    def unchanged_when_read(self) -> bool:
        return False  # made by mapping the item: it was new or changed, or not looked up


STATEMENT_VALUES = 17

# tuple.__new__ skips the named tuple's Python-level constructor: a row is built for every product (by the
# mapping) and again when it crosses from a worker process, and the constructor was most of that cost.
new_product_row = functools.partial(tuple.__new__, ProductRow)


class MappedRow(Protocol):
    """A mapped product as the sink first sees it: what it compares, and the full row on demand.

    A :class:`ProductRow`, or a row mapped in a worker process whose full form is loaded only if the
    product is new or changed (see packing.py).
    """

    @property
    def position(self) -> int: ...
    @property
    def external_id(self) -> str: ...
    @property
    def content_hash(self) -> int: ...
    @property
    def source_hash(self) -> int: ...
    @property
    def unchanged_when_read(self) -> bool:
        """Whether the mapping found the catalog holding this item as received (and made no row): the
        sink still checks, inside its transaction, that the catalog holds it so."""

    def full(self) -> ProductRow: ...


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


def _transliterate(text: str) -> str:
    parts: list[str] = []
    for char in text:
        if char.isascii():
            parts.append(char)
        elif unicodedata.name(char, "").startswith(_WORD_CHARACTERS):
            parts.append(f" {anyascii(char)} ")
        else:
            parts.append(anyascii(char))
    return "".join(parts)


def slugify(text: str) -> str:
    """ASCII slug of text in any script: transliterated (Cyrillic, Greek, CJK, ... by anyascii), and
    everything that is not a letter or digit becomes one dash."""
    if text.isascii() and text.isalnum():
        return text.lower()  # already a slug but for case (most external ids): no regex
    ascii_text = text if text.isascii() else _transliterate(unicodedata.normalize("NFC", text))
    return b"-".join(ascii_text.lower().encode("ascii").translate(_SLUG_BYTES).split()).decode("ascii")


def minor_digits(currency: str) -> int:
    return _MINOR_DIGITS.get(currency.upper(), 2)


def to_minor_units(price: Decimal, currency: str) -> int:
    """Exact conversion to integer minor units; a price that would need rounding is refused, not rounded."""
    digits = minor_digits(currency)
    # Nearly every price is written plainly ("299.32") with no more decimals than the currency has: its
    # minor units are its digits, read from its text without the Decimal arithmetic below (most of the
    # cost of converting a price).
    whole, _, fraction = str(price).partition(".")
    written = whole + fraction
    if len(fraction) <= digits and len(whole) < _MAX_MINOR_DIGITS - digits and written.isdigit():
        return int(written + "0" * (digits - len(fraction)))  # at most 18 digits: never too large
    # adjusted() is the exponent of the leading digit, exact for any price: one past 19 digits in minor
    # units is refused before anything is computed with it (1E+999999999 included).
    if price.adjusted() + digits >= _MAX_MINOR_DIGITS:
        raise MappingError(f"price {price} is too large")
    # Decided on the digits themselves, not by arithmetic, which rounds (to 28 digits by default) and
    # underflows (1E-999999999 to 0): the digits past the minor unit must all be zeros.
    _, coefficient, exponent = price.as_tuple()
    finer = -digits - int(exponent)
    if finer > 0 and any(coefficient[-finer:]):
        raise MappingError(f"price {price} has more than {digits} decimal places for {currency}")
    needed = len(coefficient) + digits + 1  # precision for every digit, so that scaling is exact
    if getcontext().prec >= needed:
        minor = int(price.scaleb(digits))  # nearly every price: no context of its own to set up
    else:
        with localcontext() as context:
            context.prec = needed
            minor = int(price.scaleb(digits))
    if minor > _MAX_MINOR:
        raise MappingError(f"price {price} is too large")
    return minor


def content_hash(parts: Sequence[Any]) -> int:
    """A stable 63-bit fingerprint of the content fields (fits SQLite's signed 64-bit INTEGER)."""
    # The parts hold no objects (metadata is already JSON text), so there are no keys to sort.
    digest = hashlib.blake2b(orjson.dumps(parts), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def derived_handle(prefix: str, text: str) -> str:
    """A stable handle for text with nothing to transliterate (only symbols, say): prefix and a hash."""
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


@functools.lru_cache(maxsize=1024)
def category_handle(category: str) -> str:
    # A feed has few categories and many products in each: slugify each category once per process.
    return slugify(category) or derived_handle("category", category)


# Part of every source hash: bump it when the same upstream item would now map to a different row, so
# the next sync maps every item again instead of taking the stored rows as up to date.
MAPPING_VERSION = 2


# The fingerprint of an item that cannot be serialised; stored fingerprints are never negative.
UNHASHABLE = -1


def source_hash(raw: RawItem, currency: str) -> int:
    """A stable 63-bit fingerprint of an upstream item as received, with what else decides its row.

    Equal fingerprints mean the item would map to the same row as last time, so it needs no validation
    or mapping. Bytes differing in form only (key order, spacing) give another fingerprint: such an item
    is mapped, and its content hash then finds it unchanged.
    """
    if isinstance(raw, OversizeItem):
        return UNHASHABLE
    try:
        data = raw if isinstance(raw, bytes) else exact_json.dumps(raw)
    except exact_json.JsonValueError:
        return UNHASHABLE  # the item cannot be stored either: it will be an item error
    hasher = _source_hasher(currency).copy()  # the prefix hashed once, not copied before every item
    hasher.update(data)
    return int.from_bytes(hasher.digest()[:8], "big") >> 1


@functools.lru_cache(maxsize=64)
def _source_hasher(currency: str) -> hashlib._Hash:
    # SHA-256 rather than BLAKE2: CPUs hash it in hardware, so it is the faster of the two here.
    return hashlib.sha256(f"{MAPPING_VERSION}:{currency}:".encode())


def _json_text(value: Any, field: str) -> str:
    try:
        return exact_json.dumps(value, sort_keys=True).decode()
    except exact_json.JsonValueError as exc:
        raise MappingError(f"{field}: {exc}") from None


def _check_text(value: str | None, field: str) -> None:
    # Lone surrogates pass validation (JSON can escape them) but SQLite and shops only take Unicode.
    if value is not None and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MappingError(f"{field}: the text holds a lone surrogate, which is not Unicode") from None


class ProductFields(Protocol):
    """A valid product's fields, as the model gives them: an :class:`UpstreamProduct`, or the same
    values read by the fast path (:func:`~service.upstream.plain_items.plain_product`)."""

    @property
    def external_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def price(self) -> Decimal: ...
    @property
    def brand(self) -> str | None: ...
    @property
    def sku(self) -> str | None: ...
    @property
    def stock(self) -> int | None: ...
    @property
    def thumbnail(self) -> str | None: ...
    @property
    def images(self) -> list[str]: ...
    @property
    def tags(self) -> list[str]: ...


def map_product(
    product: ProductFields, extras: Mapping[str, Any], position: int, currency: str, fingerprint: int
) -> ProductRow:
    """The catalog row of a valid product with its extra fields; ``fingerprint`` is its item's
    :func:`source_hash`.

    Every field of the row is checked here to be storable (Unicode text, 64-bit integers), so that a
    row, once made, can always be written: an item that cannot be stored fails here, as an item error.
    """
    texts = (product.external_id, product.title, product.description, product.category)
    optional = (product.brand, product.sku, product.thumbnail)
    # One look for the common case, plain ASCII; the fields one by one only to name the bad one.
    if not "".join((*texts, *(text for text in optional if text is not None))).isascii():
        for field in ("external_id", "title", "description", "category", "brand", "sku", "thumbnail"):
            _check_text(getattr(product, field), field)
    handle_of_category = category_handle(product.category)
    price_minor = to_minor_units(product.price, currency)
    images = _json_text(product.images, "images")
    tags = _json_text(product.tags, "tags")
    metadata = _json_text(extras, "extra fields")
    # The content fields in the row's order; the hash takes them with the category's name after its
    # handle (an order fixed by the hashes already stored).
    described = (product.title, product.description, handle_of_category)
    offered = (
        price_minor,
        currency,
        product.brand,
        product.sku,
        product.stock,
        product.thumbnail,
        images,
        tags,
        metadata,
    )
    content = content_hash([*described, product.category, *offered])
    handle_base = slugify(product.title) or derived_handle("product", product.title)
    external_id = product.external_id
    handle_with_id = f"{handle_base}-{slugify(external_id) or 'id'}"
    # In the fields' order.
    identity = (external_id, handle_base, handle_with_id)
    return new_product_row(
        (*identity, *described, *offered, content, fingerprint, product.category, position)
    )


def _validate(raw: bytes | Mapping[str, Any], needs_exact: bool) -> UpstreamProduct:
    if not isinstance(raw, bytes):
        return UpstreamProduct.model_validate(raw)
    if needs_exact:
        # pydantic's JSON parser reads numbers as doubles: a price with 17 digits would be rounded.
        try:
            parsed = exact_json.loads(raw)
        except (ValueError, RecursionError):
            pass  # not JSON: pydantic's own parser says why, in its words
        else:
            return UpstreamProduct.model_validate(parsed)
    try:
        return UpstreamProduct.model_validate_json(raw)
    except ValidationError as exc:
        # pydantic's parser stops at 255 levels of nesting; the standard library reads deeper, so an
        # item nested like that is judged as it is in a DummyJSON page rather than called invalid JSON.
        if not any("recursion limit" in str(error.get("msg", "")) for error in exc.errors()):
            raise
        try:
            parsed = exact_json.loads(raw)
        except (ValueError, RecursionError):
            raise exc from None
        return UpstreamProduct.model_validate(parsed)


def map_item(
    raw: RawItem, position: int, currency: str, *, may_need_exact: bool = True
) -> ProductRow | ItemError:
    """Validate and map one item: a parsed JSON object (DummyJSON) or one NDJSON line (bytes).

    Whatever the item holds, the answer is a row or an item error: this is where one bad product is
    kept from failing the run, so every exception of validating and mapping it ends here.
    ``may_need_exact=False``: the caller found that no number of this item needs the exact parser
    (see :func:`exact_json.needs_exact_parse`), checked once for many items.

    An item the model would take with no change is read by the fast path (see plain_items); the model
    judges every other one, and words every item error.
    """
    if isinstance(raw, OversizeItem):
        return ItemError(position, None, raw.reason)
    try:
        fingerprint = source_hash(raw, currency)
        needs_exact = False
        plain = None
        if isinstance(raw, bytes):
            needs_exact = may_need_exact and exact_json.needs_exact_parse(raw)
            plain = None if needs_exact else plain_product(raw)
        if plain is not None:
            try:
                return map_product(*plain, position, currency, fingerprint)
            except MappingError:
                pass  # refused in the words of the model's reading (the price as it reads it, say)
        product = _validate(raw, needs_exact)
        return map_product(product, product.extras, position, currency, fingerprint)
    except ValidationError as exc:
        return ItemError(position, upstream_id(raw), _shorten(describe_validation_error(exc)))
    except MappingError as exc:
        return ItemError(position, upstream_id(raw), _shorten(str(exc)))
    except RecursionError:
        return ItemError(position, upstream_id(raw), "the item is nested too deeply to read")
    except Exception as exc:  # a case the checks above did not foresee: still this item's error alone
        log.warning("item at position %d could not be mapped", position, exc_info=True)
        reason = f"cannot map the item: {type(exc).__name__}: {exc}"
        return ItemError(position, upstream_id(raw), _shorten(reason))


def map_items(items: Sequence[RawItem], first_position: int, currency: str, total: int | None) -> MappedChunk:
    return MappedChunk(
        [map_item(raw, first_position + offset, currency) for offset, raw in enumerate(items)], total
    )


def _shorten(reason: str) -> str:
    # The reason is stored as text, and a message may quote a lone surrogate of the item.
    reason = reason.encode("utf-8", "replace").decode("utf-8")
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"
