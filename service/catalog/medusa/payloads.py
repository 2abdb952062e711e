"""One catalog row as Medusa v2's Admin API wants it: pure functions, no I/O.

One product, one option ("Default option" / "Default") and one variant carrying the SKU and the price.
Prices are major units, written exactly from the integer minor units (``999`` USD cents -> ``9.99``).
An update sends the product's, the variant's and the price's ids, so they survive: a variant sent without
its id would replace the variant set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from numbers import Real
from typing import Any

import orjson

from service.catalog.mapping import ProductRow, minor_digits

OPTION_TITLE = "Default option"
OPTION_VALUE = "Default"
VARIANT_TITLE = "Default"
# Upstream fields Medusa has product columns for; the rest of the extras stay in metadata.
_DIMENSIONS = {"width": "width", "height": "height", "depth": "length"}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a product goes in the shop: decided by the sink, the same for a create and an update."""

    handle: str
    category_id: str
    sales_channel_id: str
    status: str


@dataclass(frozen=True, slots=True)
class MedusaIds:
    """The ids an update sends so Medusa changes the product in place."""

    product_id: str
    variant_id: str
    price_id: str


def major_units(price_minor: int, currency: str) -> Decimal:
    return Decimal(price_minor).scaleb(-minor_digits(currency))


def _number(value: Any) -> Real | None:
    return value if isinstance(value, Real) and not isinstance(value, bool) else None


def _product_fields(row: ProductRow, place: Placement) -> dict[str, Any]:
    extras: dict[str, Any] = orjson.loads(row.metadata) if row.metadata else {}
    fields: dict[str, Any] = {
        "title": row.title,
        "handle": place.handle,
        "description": row.description,
        "external_id": row.external_id,
        "status": place.status,
        "thumbnail": row.thumbnail,
        "images": [{"url": url} for url in orjson.loads(row.images)],
        "categories": [{"id": place.category_id}],
        "sales_channels": [{"id": place.sales_channel_id}],
    }
    weight = _number(extras.get("weight"))
    if weight is not None:
        fields["weight"] = weight
    dimensions = extras.get("dimensions")
    if isinstance(dimensions, dict):
        for upstream, medusa in _DIMENSIONS.items():
            value = _number(dimensions.get(upstream))
            if value is not None:
                fields[medusa] = value
    fields["metadata"] = {
        **extras,
        "brand": row.brand,
        "tags": orjson.loads(row.tags),
        "stock": row.stock,
        "category": row.category_name,
        "source": "product-sync",
    }
    return fields


def _price(row: ProductRow) -> dict[str, Any]:
    return {"currency_code": row.currency.lower(), "amount": major_units(row.price_minor, row.currency)}


def create_payload(row: ProductRow, place: Placement) -> dict[str, Any]:
    variant: dict[str, Any] = {
        "title": VARIANT_TITLE,
        "manage_inventory": False,
        "options": {OPTION_TITLE: OPTION_VALUE},
        "prices": [_price(row)],
    }
    if row.sku:
        variant["sku"] = row.sku
    return {
        **_product_fields(row, place),
        "options": [{"title": OPTION_TITLE, "values": [OPTION_VALUE]}],
        "variants": [variant],
    }


def changed_fields(payload: Mapping[str, Any], current: Mapping[str, Any] | None) -> list[str]:
    """The fields of an update ``payload`` that differ from the product Medusa holds (``current``, as
    read with the sink's plan fields); every field when Medusa no longer holds it."""
    fields = ("title", "handle", "description", "status", "thumbnail")
    if current is None:
        return [*fields, "images", "category", "price", "sku", "metadata"]
    changed = [name for name in fields if payload.get(name) != current.get(name)]
    if [image["url"] for image in payload["images"]] != [i.get("url") for i in current.get("images") or []]:
        changed.append("images")
    if [c["id"] for c in payload["categories"]] != [c.get("id") for c in current.get("categories") or []]:
        changed.append("category")
    sent = payload["variants"][0]
    held = (current.get("variants") or [{}])[0]
    held_prices = [
        p for p in held.get("prices") or [] if p.get("currency_code") == sent["prices"][0]["currency_code"]
    ]
    if not held_prices or Decimal(str(held_prices[0].get("amount"))) != Decimal(
        str(sent["prices"][0]["amount"])
    ):
        changed.append("price")
    if sent.get("sku") != held.get("sku"):
        changed.append("sku")
    if payload.get("metadata") != current.get("metadata"):
        changed.append("metadata")
    return changed


def update_payload(row: ProductRow, place: Placement, ids: MedusaIds) -> dict[str, Any]:
    variant: dict[str, Any] = {
        "id": ids.variant_id,
        "title": VARIANT_TITLE,
        "manage_inventory": False,
        # No price id (a variant created without a price, as the replaced job left them): one is added.
        "prices": [{"id": ids.price_id, **_price(row)} if ids.price_id else _price(row)],
    }
    if row.sku:
        variant["sku"] = row.sku
    return {"id": ids.product_id, **_product_fields(row, place), "variants": [variant]}
