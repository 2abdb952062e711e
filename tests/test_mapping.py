from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

import hypothesis.strategies as st
import orjson
import pytest
from hypothesis import given

from service.catalog.mapping import (
    MAPPING_VERSION,
    MappingError,
    ProductRow,
    map_item,
    map_items,
    slugify,
    source_hash,
    to_minor_units,
)
from service.demo_upstream.products import demo_product
from service.domain.outcomes import ItemError


def product(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": 7,
        "title": "Essence Mascara Lash Princess",
        "description": "Volumizing.",
        "category": "beauty",
        "price": 9.99,
        "brand": "Essence",
        "sku": "BEA-ESS-001",
        "stock": 99,
        "images": ["https://x/1.webp"],
        "thumbnail": "https://x/t.webp",
        "tags": ["beauty", "mascara"],
        "rating": 2.56,
        "dimensions": {"width": 15.14},
        "meta": {"barcode": "5784719087687"},
    }
    item.update(changes)
    return {key: value for key, value in item.items() if value is not ...}


def mapped(raw: dict[str, Any] | bytes, currency: str = "USD") -> ProductRow:
    row = map_item(raw, 3, currency)
    assert isinstance(row, ProductRow), row
    return row


def error_of(raw: dict[str, Any] | bytes) -> ItemError:
    error = map_item(raw, 3, "USD")
    assert isinstance(error, ItemError), error
    return error


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Essence Mascara Lash Princess", "essence-mascara-lash-princess"),
        ("Blue & Black Check Shirt", "blue-black-check-shirt"),
        ("Crème brûlée  Set!", "creme-brulee-set"),
        ("  --iPhone 13 Pro--", "iphone-13-pro"),
        ("日本", "ri-ben"),  # each ideograph a syllable, kept apart
        ("Одежда для детей", "odezhda-dlya-detey"),
        ("Ομορφιά", "omorfia"),
        ("家电", "jia-dian"),
        ("Straße", "strasse"),
        ("!!!", ""),
        ("SKU42", "sku42"),  # letters and digits only: the fast path
        ("4711", "4711"),
        ("\tTab\nand_Under.score\r", "tab-and-under-score"),  # every non-alphanumeric is a separator
        ("Ünïcödé & ASCII", "unicode-ascii"),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug


@pytest.mark.parametrize(
    ("price", "currency", "minor"),
    [
        (Decimal("9.99"), "USD", 999),
        (Decimal("1899.99"), "USD", 189999),
        (Decimal("0.1"), "EUR", 10),
        (Decimal("12"), "USD", 1200),
        (Decimal("1E+2"), "USD", 10000),
        (Decimal("250"), "JPY", 250),
        (Decimal("1.005"), "KWD", 1005),
        (Decimal("0"), "USD", 0),
        (Decimal("12345678901234567.00"), "USD", 1234567890123456700),  # 22 digits: the default context
        (Decimal("1." + "0" * 30), "USD", 100),  # past the default precision: a context of its own
        (Decimal("92233720368547758.07"), "USD", 2**63 - 1),
        (Decimal("1.50"), "USD", 150),
        (Decimal("0.07"), "USD", 7),
        (Decimal("5.0"), "JPY", 5),  # a zero past the currency's decimals is no finer
        (Decimal("9999999999999999.99"), "USD", 999999999999999999),  # the most digits read as text
        (Decimal("1.5E+3"), "KWD", 1500000),
    ],
)
def test_prices_convert_exactly_to_minor_units(price: Decimal, currency: str, minor: int) -> None:
    assert to_minor_units(price, currency) == minor


def _minor_units_by_arithmetic(price: Decimal, currency_digits: int) -> int | None:
    """The minor units of a price by exact arithmetic (precision for every digit), None if finer."""
    with localcontext() as context:
        context.prec = 100
        scaled = price.scaleb(currency_digits)
        return int(scaled) if scaled == scaled.to_integral_value() else None


@given(
    price=st.decimals(min_value=0, max_value=Decimal("1E+17"), places=None, allow_nan=False),
    currency=st.sampled_from([("USD", 2), ("JPY", 0), ("KWD", 3)]),
)
def test_minor_units_are_the_scaled_price_or_refused(price: Decimal, currency: tuple[str, int]) -> None:
    code, digits = currency
    expected = _minor_units_by_arithmetic(price, digits)
    if expected is None or expected > 2**63 - 1:
        with pytest.raises(MappingError):
            to_minor_units(price, code)
    else:
        assert to_minor_units(price, code) == expected


def test_a_price_finer_than_the_currency_is_refused_not_rounded() -> None:
    with pytest.raises(MappingError, match="more than 2 decimal places"):
        to_minor_units(Decimal("9.999"), "USD")
    with pytest.raises(MappingError, match="more than 0 decimal places"):
        to_minor_units(Decimal("100.5"), "JPY")


def test_json_float_prices_keep_their_decimal_value() -> None:
    # 0.1 + 0.2 style binary noise must not appear: the literal 1.1 is 110 cents, and so on.
    for literal, cents in [(b"1.1", 110), (b"0.29", 29), (b"4.35", 435), (b"1899.99", 189999), (b"0.07", 7)]:
        line = orjson.dumps(product()).replace(b'"price":9.99', b'"price":' + literal)
        assert mapped(line).price_minor == cents
        assert mapped(orjson.loads(line)).price_minor == cents


def test_maps_every_field_and_keeps_the_rest_in_metadata() -> None:
    row = mapped(product())
    assert row.position == 3
    assert row.external_id == "7"
    assert row.handle_base == "essence-mascara-lash-princess"
    assert (row.title, row.description, row.brand, row.sku, row.stock) == (
        "Essence Mascara Lash Princess",
        "Volumizing.",
        "Essence",
        "BEA-ESS-001",
        99,
    )
    assert (row.category_handle, row.category_name) == ("beauty", "beauty")
    assert (row.price_minor, row.currency) == (999, "USD")
    assert orjson.loads(row.images) == ["https://x/1.webp"]
    assert row.thumbnail == "https://x/t.webp"
    assert orjson.loads(row.tags) == ["beauty", "mascara"]
    assert orjson.loads(row.metadata) == {
        "rating": 2.56,
        "dimensions": {"width": 15.14},
        "meta": {"barcode": "5784719087687"},
    }


def test_optional_fields_may_be_missing() -> None:
    row = mapped(product(brand=..., sku=..., stock=..., images=..., thumbnail=..., tags=..., description=...))
    assert (row.brand, row.sku, row.stock, row.thumbnail, row.images, row.tags, row.description) == (
        None,
        None,
        None,
        None,
        "[]",
        "[]",
        "",
    )


def test_category_handle_is_the_slug_of_its_name() -> None:
    row = mapped(product(category="Kitchen Accessories"))
    assert (row.category_handle, row.category_name) == ("kitchen-accessories", "Kitchen Accessories")


@pytest.mark.parametrize(
    ("category", "handle"),
    [("Одежда", "odezhda"), ("家电", "jia-dian"), ("Ομορφιά", "omorfia"), ("Beauté", "beaute")],
)
def test_categories_in_any_script_get_a_handle_and_keep_their_name(category: str, handle: str) -> None:
    row = mapped(product(category=category, title="Футболка"))
    assert (row.category_handle, row.category_name) == (handle, category)
    assert row.handle_base == "futbolka"


def test_a_name_with_nothing_to_transliterate_gets_a_stable_derived_handle() -> None:
    first, again = mapped(product(category="%%%", title="???")), mapped(product(category="%%%", title="???"))
    assert first.category_handle == again.category_handle
    assert first.category_handle.startswith("category-") and len(first.category_handle) == 19
    assert first.category_name == "%%%"
    assert first.handle_base.startswith("product-") and first.handle_base == again.handle_base
    assert mapped(product(category="&&&")).category_handle != first.category_handle


def test_values_a_double_or_int64_cannot_hold_are_stored_exactly_or_refused() -> None:
    line = (
        b'{"id": 123456789012345678901, "title": "Big", "category": "c", "price": 12.5,'
        b' "barcode": 123456789012345678901234567890, "ratio": 0.12345678901234567890123}'
    )
    row = mapped(line)
    assert row.external_id == "123456789012345678901"
    assert row.metadata == '{"barcode":123456789012345678901234567890,"ratio":0.12345678901234567890123}'
    assert row.price_minor == 1250
    # Rounded to a double, this price would be 19.99 and pass: read exactly, it is refused.
    fine = b'{"id": 1, "title": "t", "category": "c", "price": 19.9900000000000000001}'
    assert error_of(fine).reason == "price 19.9900000000000000001 has more than 2 decimal places for USD"
    huge = b'{"id": 1, "title": "t", "category": "c", "price": 1e400}'
    assert error_of(huge).reason.startswith("price")
    # Past the 28 digits of Decimal's default precision: still refused, not rounded to 100 cents.
    longer = b'{"id": 1, "title": "t", "category": "c", "price": 1.000000000000000000000000000001}'
    assert (
        error_of(longer).reason
        == "price 1.000000000000000000000000000001 has more than 2 decimal places for USD"
    )
    tiny = b'{"id": 1, "title": "t", "category": "c", "price": 1e-999999999}'
    assert "more than 2 decimal places" in error_of(tiny).reason


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_deep_nesting_and_lone_surrogates_are_item_errors_or_stored() -> None:
    row = mapped(product(extra=_nested(300)))
    assert orjson.loads(row.metadata.replace("[" * 300, "[").replace("]" * 300, "]"))["extra"] == ["leaf"]
    very_deep = (
        b'{"id": 1, "title": "t", "category": "c", "price": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    )
    assert error_of(very_deep).reason.startswith("invalid JSON: recursion limit exceeded")
    assert error_of(product(extra=_nested(5000))).reason == (
        "extra fields: the value is nested too deeply to store"
    )
    surrogate = b'{"id": 1, "title": "t\\ud800", "category": "c", "price": 1}'
    assert error_of(surrogate).reason.startswith("invalid JSON: unexpected end of hex escape")
    as_object = product(brand="\ud800")
    assert "brand" in error_of(as_object).reason


def test_content_hash_is_stable_and_sees_every_content_change() -> None:
    base = mapped(product()).content_hash
    assert mapped(product()).content_hash == base
    assert 0 <= base < 2**63
    # Key order upstream does not matter.
    assert mapped(dict(reversed(list(product().items())))).content_hash == base
    changes: list[dict[str, Any]] = [
        {"title": "Other"},
        {"price": 9.98},
        {"stock": 98},
        {"brand": None},
        {"images": []},
        {"tags": ["x"]},
        {"rating": 2.57},
        {"category": "makeup"},
        {"description": "New."},
    ]
    for change in changes:
        assert mapped(product(**change)).content_hash != base, change
    assert mapped(product(), currency="EUR").content_hash != base


@pytest.mark.parametrize(
    ("raw", "external_id", "reason"),
    [
        (product(title=...), "7", "title: Field required"),
        (product(title="   "), "7", "title: String should have at least 1 character"),
        (product(price=-1), "7", "price: Input should be greater than or equal to 0"),
        (product(price="abc"), "7", "price: Input should be a valid decimal"),
        (product(price=9.999), "7", "price 9.999 has more than 2 decimal places for USD"),
        (product(id=...), None, "id: Field required"),
        (product(id=" 7"), " 7", "id: Value error, id ' 7' has spaces around it; ids are taken as sent"),
        (product(stock=2**63), "7", "stock: Input should be less than or equal to 9223372036854775807"),
        (product(stock=True), "7", "stock: Value error, stock must be a number, not true or false"),
        (product(id="a\x00b"), "a\x00b", "id: Value error, id must not contain a NUL character"),
        (product(price=__import__("decimal").Decimal("19.9900000000000000001")), "7", "price 19.99000"),
        (b'{"id": 12, "title": "x", "price": ', None, "invalid JSON: EOF while parsing"),
        (b"[1, 2]", None, "Input should be an object"),
    ],
)
def test_bad_items_become_item_errors(
    raw: dict[str, Any] | bytes, external_id: str | None, reason: str
) -> None:
    error = error_of(raw)
    assert error.position == 3
    assert error.external_id == external_id
    assert reason in error.reason


def test_bytes_and_objects_map_the_same() -> None:
    item = demo_product(5)
    assert mapped(item) == mapped(orjson.dumps(item))


def test_map_items_numbers_positions_from_the_chunk_start() -> None:
    chunk = map_items([product(id=1), product(id=2, price=-5), product(id=3)], 100, "USD", 500)
    assert [row.position for row in chunk.rows] == [100, 102]
    assert [(e.position, e.external_id) for e in chunk.errors] == [(101, "2")]
    assert (chunk.processed, chunk.total) == (3, 500)


def test_a_whole_stock_written_as_a_float_is_read_as_its_literal() -> None:
    # The nearest double is 61227299634886008: the literal's own value is stored.
    assert mapped(product(stock=6.122729963488601e16)).stock == 61227299634886010
    assert mapped(product(stock=5.0)).stock == 5


def test_the_fingerprints_stay_those_earlier_versions_stored() -> None:
    """A catalog keeps each product's fingerprints from run to run: if the same item gave others after an
    upgrade (a hash computed another way), the next sync would find every product changed and rewrite
    the whole catalog. Only a MAPPING_VERSION bump may change them; these were stored by version 2."""
    item = (
        b'{"id":7,"title":"Essence Mascara Lash Princess","description":"A mascara.","category":"beauty",'
        b'"price":9.99,"stock":5,"tags":["beauty","mascara"],"brand":"Essence","sku":"RCH45Q1A",'
        b'"images":["https://cdn.dummyjson.com/1.png"],"thumbnail":"https://cdn.dummyjson.com/t.png",'
        b'"rating":4.94,"dimensions":{"width":23.17,"height":14.43,"depth":28.01}}'
    )
    row = map_item(item, 0, "USD")
    assert isinstance(row, ProductRow)
    assert MAPPING_VERSION == 2
    assert (row.source_hash, row.content_hash) == (2390811732624485543, 7773611499216892720)
    assert source_hash(item, "EUR") == 7040940473412423226  # the currency is part of it
    assert source_hash({"id": 7, "title": "x"}, "USD") == 6825289483716312706  # a parsed item (a page's)
