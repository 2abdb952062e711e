"""JSON that a feed may legally send but orjson cannot hold exactly, parsed and written without loss.

orjson is exact for almost every feed and several times faster than anything else, so it stays the
first choice. It is not exact for: integers beyond 64 bits (read as floats, or refused when written),
numbers with more significant digits than a double holds (rounded), exponents beyond a double's range
(refused or read as 0.0), ``\\u`` escapes of lone surrogates (refused), and nesting past 255 levels
(refused when written). A document that may hold one of these is parsed by the standard library with
exact numbers instead, and a value orjson cannot write is written by simplejson, which writes big
integers and ``Decimal`` exactly; both are only the slow path of a rare item.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import simplejson

# A run of 16+ digits (and dots) or a 3-digit exponent: the only number literals a double may not hold
# exactly. Strings that merely contain such a run are parsed the slow way too, which is only slower.
# Found with translate() and find(), C loops several times faster than a regular expression here:
# digits and dots become "0", exponent letters "e", everything else a space, and signs are dropped, so
# that one search finds an exponent with or without its sign. Dropping signs can only join runs of
# digits ("123-456"), which is only slower, never a number missed.
_NUMBER_SHAPES = bytes(
    ord("0") if byte in b"0123456789." else ord("e") if byte in b"eE" else 32 for byte in range(256)
)
_SIGNS = b"+-"
_LONG_RUN = b"0" * 16
_LONG_EXPONENT = b"0e000"


class JsonValueError(ValueError):
    """A value that cannot be written as JSON (too deeply nested, or text that is not Unicode)."""


def _exact_float(text: str) -> float | Decimal:
    value = float(text)
    if math.isfinite(value) and Decimal(repr(value)) == Decimal(text):
        return value
    return Decimal(text)


def _exact_int(text: str) -> int | Decimal:
    try:
        return int(text)
    except ValueError:  # beyond Python's limit on digits converted at once (4,300 by default)
        return Decimal(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes) -> Any:
    """Parse one JSON document exactly; raises ValueError (or RecursionError) when it is not JSON."""
    if not needs_exact_parse(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # perhaps a lone surrogate escape, which the exact parser keeps: let it decide
    return json.loads(data, parse_float=_exact_float, parse_int=_exact_int, parse_constant=_refuse_constant)


def needs_exact_parse(data: bytes) -> bool:
    """Whether orjson (or pydantic's JSON parser) might read ``data`` inexactly."""
    shapes = data.translate(_NUMBER_SHAPES, _SIGNS)
    return _LONG_RUN in shapes or _LONG_EXPONENT in shapes


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON, exact for every value :func:`loads` returns; raises JsonValueError if it can't be."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:
        pass  # a big integer, a Decimal, deep nesting or a lone surrogate: the exact writer decides
    try:
        text: str = simplejson.dumps(
            value, use_decimal=True, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False
        )
    except RecursionError:
        raise JsonValueError("the value is nested too deeply to store") from None
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise JsonValueError(f"the value cannot be stored as JSON: {exc}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonValueError("the text holds a lone surrogate escape, which is not Unicode") from None
