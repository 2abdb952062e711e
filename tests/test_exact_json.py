"""Which JSON texts need the exact parser: every number a double may not hold must be found (a miss
would round a price or an extra field silently); a false alarm only costs time."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from service.upstream import exact_json


@pytest.mark.parametrize(
    ("text", "needs_exact"),
    [
        (b'{"price":9.99,"stock":5}', False),
        (b'{"price":0.10000000000000001}', True),  # 17 significant digits: a double rounds them
        (b'{"id":123456789012345678901}', True),  # past 64 bits
        (b'{"weight":1e400}', True),  # past a double's range
        (b'{"weight":1E-400}', True),
        (b'{"weight":2.5e+308}', True),
        (b'{"weight":1e-07}', False),  # two exponent digits: a double holds it as written
        (b'{"weight":1.5E+20}', False),
        (b'{"sku":"Table-100","note":"size e123"}', False),  # a word's "e", not a number's exponent
        (b'{"sku":"BEA-GEN-000001"}', False),  # a letter, not a digit, before the "E-000"
        (b'{"stock":-12345678901234567}', True),  # 17 digits after a sign
        (b'{"barcode":"0002252933619"}', False),  # 13 digits
        (b'{"barcode":"1234567890123456"}', True),  # 16 digits in a string: only slower
        (b'{"uuid":"550e8400-e29b"}', True),  # looks like an exponent: only slower
        (b"e123", False),  # at the very start: nothing before the letter
        (b"7e123", True),
    ],
)
def test_numbers_a_double_may_not_hold_are_found(text: bytes, needs_exact: bool) -> None:
    assert exact_json.needs_exact_parse(text) is needs_exact


def _orjson_misreads(literal: str) -> bool:
    try:
        value = orjson.loads(literal)
    except orjson.JSONDecodeError:
        return True
    return bool(Decimal(value) != Decimal(literal))


@pytest.mark.parametrize("literal", ["0.10000000000000001", "123456789012345678901", "1e400", "1.5e-320"])
def test_what_is_found_is_what_the_fast_parser_misreads(literal: str) -> None:
    assert _orjson_misreads(literal)  # why the check exists
    assert exact_json.needs_exact_parse(literal.encode())
    assert Decimal(str(exact_json.loads(literal.encode()))) == Decimal(literal)
