"""The fast path of validating an item: a product whose every field already has its final form.

:class:`~service.upstream.models.UpstreamProduct` is the one judge of what a valid product is. Most
items of a real feed need none of its conversions (whitespace to strip, a number sent as text, a float
stock): for those, validating is only reading fields, and pydantic's per-item cost was the largest part
of a mapping worker's time. :func:`plain_product` reads such an item with orjson and msgspec (both in
C) and answers only when the model would take the item unchanged; for anything else it answers None,
and the item is validated by the model as before. It accepts a subset of what the model accepts, never
more, and gives the same values: ``tests/test_plain_items.py`` holds it to that.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from service.upstream.models import INT64_MAX, INT64_MIN


class PlainProduct(msgspec.Struct, frozen=True):
    """The model's fields, each in the one JSON type whose value the model keeps as it is.

    Strict: a JSON type the model would convert (an id of ``true``, a price as a string, a stock of
    ``5.0``) does not fit, so such an item goes to the model. The price is a JSON number here, made a
    ``Decimal`` by :attr:`price` as the model makes it.
    """

    id: int | str
    title: str
    category: str
    price_number: int | float = msgspec.field(name="price")
    description: str = ""
    brand: str | None = None
    sku: str | None = None
    stock: int | None = None
    thumbnail: str | None = None
    images: list[str] = []
    tags: list[str] = []

    @property
    def external_id(self) -> str:
        return str(self.id)

    @property
    def price(self) -> Decimal:
        # As pydantic reads a JSON number into a Decimal: a float through its shortest repr.
        number = self.price_number
        return Decimal(number) if isinstance(number, int) else Decimal(repr(number))


# The keys of an item that are fields; the others are its extra fields.
FIELDS = frozenset(PlainProduct.__struct_encode_fields__)


def _plain_fields(fields: PlainProduct) -> bool:
    """What the model checks beyond the JSON types, or would change: all of it must hold as sent."""
    external_id = fields.id
    if isinstance(external_id, str):
        # The model's id rules: not empty, taken as sent (no spaces around), no NUL.
        if not external_id or external_id != external_id.strip() or "\x00" in external_id:
            return False
    elif not INT64_MIN <= external_id <= INT64_MAX:
        return False
    price = fields.price_number
    if not fields.title or not fields.category or price < 0 or not math.isfinite(price):
        return False
    stock = fields.stock
    if stock is not None and not INT64_MIN <= stock <= INT64_MAX:
        return False
    # Nothing to strip at either end. str.strip takes a few more characters for space than the model's
    # strip does (U+001C to U+001F): an item with one of those at an end goes to the model, only slower.
    # A loop rather than a call per text: this runs for every item of a large feed.
    for text in (fields.title, fields.description, fields.category, *fields.images, *fields.tags):
        if text != text.strip():
            return False
    for optional in (fields.brand, fields.sku, fields.thumbnail):
        if optional is not None and optional != optional.strip():
            return False
    return True


def plain_product(raw: bytes) -> tuple[PlainProduct, dict[str, Any]] | None:
    """The item's fields and its extra fields, when the model would take the item with no change; None
    when the model must judge it (invalid, or valid only after a conversion).

    The caller has ruled out numbers a double may not hold (see exact_json), which both parsers here
    would read inexactly, as pydantic's JSON parser does.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        fields = msgspec.convert(data, PlainProduct)
    except msgspec.ValidationError:
        return None
    if not _plain_fields(fields):
        return None
    # The dict is this call's own: the fields are taken out of it, a few lookups rather than a test of
    # every key of the item.
    for key in FIELDS:
        data.pop(key, None)
    return fields, data
