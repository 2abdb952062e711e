"""The fast path of validation (service/upstream/plain_items.py) changes no outcome.

For every item, the row or the item error is the same with the fast path as with the model alone; the
fast path answers only for items the model takes unchanged, with the same fields and extra fields; and
it does answer for the items of real feeds (else it would be dead code that these checks cannot see).
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from service.catalog import mapping
from service.catalog.mapping import ProductRow, map_item
from service.demo_upstream.products import demo_product
from service.domain.outcomes import ItemError
from service.upstream import exact_json
from service.upstream.models import UpstreamProduct
from service.upstream.plain_items import FIELDS, PlainProduct, plain_product
from tests.fuzz_feeds import UNICODE_WS, FeedSpec, Spec, Style, build_items, hard_values, specs

HARD_TARGETS = (
    *("id", "title", "description", "category", "price", "brand", "sku", "stock", "thumbnail"),
    *("images", "tags", "extra value", "extra key", "whole item"),
)


def _map(raw: bytes, *, fast: bool) -> ProductRow | ItemError:
    with pytest.MonkeyPatch.context() as patch:
        if not fast:
            patch.setattr(mapping, "plain_product", lambda raw: None)
        return map_item(raw, 5, "EUR")


def assert_same_outcome(raw: bytes) -> None:
    """The same row (every field) or the same item error, with or without the fast path; and where the
    fast path answers, the model takes the item and reads the same fields and extras."""
    assert _map(raw, fast=True) == _map(raw, fast=False)
    if exact_json.needs_exact_parse(raw):
        return  # never given to the fast path, whose parsers read such numbers as doubles
    answer = plain_product(raw)
    if answer is None:
        return
    fields, extras = answer
    model = mapping._validate(raw, needs_exact=False)  # as the mapping reads it (deep nesting included)
    for name in UpstreamProduct.model_fields:
        assert getattr(fields, name) == getattr(model, name), name
    assert fields.external_id == model.external_id
    assert extras == model.extras


def _raw(spec: Spec, style: Style) -> bytes:
    [item] = build_items(FeedSpec("ndjson", (spec,), style=style))
    return item.raw


def test_the_fast_path_reads_the_models_fields() -> None:
    # A field added to the model and not here would be left out of every row the fast path reads.
    assert set(UpstreamProduct.model_fields) == FIELDS
    assert set(PlainProduct.__struct_fields__) - FIELDS == {"price_number"}


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_real_feed_items_take_the_fast_path_with_the_same_rows(variant: int) -> None:
    for index in range(0, 3000, 7):
        raw = orjson.dumps(demo_product(index, 0, variant))
        assert plain_product(raw) is not None, raw
        assert_same_outcome(raw)


@pytest.mark.parametrize("target", HARD_TARGETS)
def test_hard_values_in_every_field_give_the_same_outcome(target: str) -> None:
    for spec in hard_values(target):
        for style in (Style(), Style(ascii_only=True, spaced=True)):
            assert_same_outcome(_raw(spec, style))


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(spec=specs("ndjson", max_fields=6), ascii_only=st.booleans(), spaced=st.booleans())
def test_any_item_gives_the_same_outcome(spec: Spec, ascii_only: bool, spaced: bool) -> None:
    assert_same_outcome(_raw(spec, Style(ascii_only=ascii_only, spaced=spaced)))


def _item(**changes: Any) -> bytes:
    product: dict[str, Any] = {"id": 7, "title": "Lamp", "category": "home", "price": 9.99, "rating": 4.5}
    product.update(changes)
    return orjson.dumps(product)


@pytest.mark.parametrize(
    "raw",
    [
        _item(title=" Lamp"),  # the model strips it
        _item(tags=["a", "b\u2003"]),  # an em space, stripped by the model too
        _item(description="text\x1c"),  # kept by the model, but Python calls it space: the model decides
        _item(id=True),
        _item(id=" 7"),
        _item(id=""),
        _item(id="a\x00b"),
        _item(id=2**63),
        _item(price="9.99"),  # valid after a conversion
        _item(price=-1),
        _item(stock=5.0),
        _item(stock=True),
        _item(stock="5"),
        _item(title=""),
        _item(description=None),
        _item(images=["a", 1]),
        b"[1, 2]",
        b'{"id": 7, "title": "Lamp"',
        b'{"id": 7, "title": "La\\ud800mp", "category": "home", "price": 1}',
        b'{"id": 7, "title": "Lamp", "category": "home", "price": 1, "title": " x "}',
    ],
)
def test_items_the_model_must_judge_are_left_to_it(raw: bytes) -> None:
    assert plain_product(raw) is None
    assert_same_outcome(raw)


def test_every_space_the_model_strips_sends_the_item_to_the_model() -> None:
    # The fast path takes an item only with no space to strip, by Python's idea of space: it must
    # include every character the model strips (Unicode White_Space).
    for char in UNICODE_WS:
        for raw in (_item(title=f"Lamp{char}"), _item(tags=[f"{char}a"]), _item(id=f"{char}7")):
            assert plain_product(raw) is None, repr(char)
            assert_same_outcome(raw)


@pytest.mark.parametrize(
    "raw",
    [
        _item(),
        _item(id="SKU-7", stock=None, brand=None),
        _item(price=0, stock=-3, images=[], tags=[]),
        _item(title="Lampe à poser", description="", meta={"nested": [1, 2.5, None, {"k": "v"}]}),
        b'{"id": 7, "title": " x ", "category": "home", "price": 1, "title": "Lamp"}',  # the last wins
        _item(price=1e2),
        _item(price=0.1),
    ],
)
def test_plain_items_take_the_fast_path(raw: bytes) -> None:
    assert plain_product(raw) is not None
    assert_same_outcome(raw)
