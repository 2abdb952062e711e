"""What the Medusa sink sends, built from a mapped row: exact major units, ids on update, no options."""

from __future__ import annotations

from decimal import Decimal

import orjson
from pydantic import SecretStr

from service.catalog.mapping import ProductRow, map_item
from service.catalog.medusa.client import basic_auth
from service.catalog.medusa.payloads import MedusaIds, Placement, create_payload, major_units, update_payload
from service.upstream import exact_json
from tests.upstream import make_product

PLACE = Placement(handle="a-product", category_id="pcat_1", sales_channel_id="sc_1", status="published")


def _row(**overrides: object) -> ProductRow:
    row = map_item(make_product(7, **overrides), 6, "USD")
    assert isinstance(row, ProductRow)
    return row


def test_prices_are_major_units_written_exactly() -> None:
    assert major_units(999, "USD") == Decimal("9.99")
    assert major_units(1999, "JPY") == Decimal("1999")  # no minor unit
    assert major_units(12345, "KWD") == Decimal("12.345")  # three decimals
    big = 2**63 - 1
    body = exact_json.dumps({"amount": major_units(big, "USD")})
    assert body == b'{"amount":92233720368547758.07}'  # not rounded through a float


def test_a_create_has_one_option_and_one_variant_with_the_sku_and_price() -> None:
    row = _row(price="19.90", sku="SKU-7", weight=2, dimensions={"width": 1.5, "height": 2, "depth": 3})
    body = orjson.loads(exact_json.dumps(create_payload(row, PLACE)))
    assert body["external_id"] == "7" and body["handle"] == "a-product" and body["status"] == "published"
    assert body["options"] == [{"title": "Default option", "values": ["Default"]}]
    (variant,) = body["variants"]
    assert variant["sku"] == "SKU-7" and variant["manage_inventory"] is False
    assert variant["options"] == {"Default option": "Default"}
    assert variant["prices"] == [{"currency_code": "usd", "amount": 19.9}]
    assert (body["weight"], body["width"], body["height"], body["length"]) == (2, 1.5, 2, 3)
    assert body["categories"] == [{"id": "pcat_1"}] and body["sales_channels"] == [{"id": "sc_1"}]
    assert body["metadata"]["brand"] == row.brand and body["metadata"]["source"] == "product-sync"


def test_an_update_sends_the_ids_and_no_options() -> None:
    body = update_payload(_row(), PLACE, MedusaIds("prod_1", "variant_1", "price_1"))
    assert body["id"] == "prod_1"
    assert "options" not in body  # refused on update since Medusa 2.16
    (variant,) = body["variants"]
    assert variant["id"] == "variant_1" and variant["prices"][0]["id"] == "price_1"
    assert "options" not in variant


def test_an_update_without_a_price_id_adds_the_price() -> None:
    # A product the replaced job created has a variant without price: the price is added to it.
    body = update_payload(_row(), PLACE, MedusaIds("prod_1", "variant_1", ""))
    assert body["variants"][0]["prices"] == [{"currency_code": "usd", "amount": Decimal("7.99")}]


def test_the_key_goes_as_http_basic_with_no_password() -> None:
    assert basic_auth(SecretStr("sk_abc")) == "Basic c2tfYWJjOg=="
