"""Fuzzed feeds for the item-content promise: any JSON in any product field never fails a run.

What is here, for tests/test_item_fuzz.py:

- a JSON value model whose numbers are kept as the literal written (:class:`Num`), so a feed can carry
  what a Python float cannot (``19.9900000000000000001``, ``1e400``, a 300-digit integer), and a writer
  that turns it into feed bytes (any escaping, lone surrogate escapes included);
- hypothesis strategies for values of any type, size, depth, number range and string content, for
  products with arbitrary values in their fields and extra fields, whole items that are not products,
  broken NDJSON lines and repeated ids;
- an independent oracle (:func:`judge`) that says, from the item as sent, whether it must be stored
  (and exactly as what), must be an item error, or may be either (then only stored faithfully);
- a real upstream on loopback serving the bytes as DummyJSON pages (honouring ``limit``/``skip``) or as
  NDJSON;
- :func:`check_feed`: two runs of the real engine on a fresh SQLite file, and every check of the promise.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, TypeAlias

import hypothesis.strategies as st
from aiohttp import web
from hypothesis import currently_in_test_context, note

from service.catalog.tables_sink import CatalogTablesSink
from service.ledger.records import RunRecord
from service.settings import Settings
from service.sync.engine import run_catalog_sync
from service.sync.job import RunContext
from service.transport.offload import MappingPool
from tests.engine_fixtures import Harness, harness
from tests.upstream import make_product

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Extras nested up to this depth must be stored; deeper ones may be refused as item errors.
MUST_STORE_DEPTH = 100
# Unicode White_Space (what pydantic strips); Python's str.strip() also strips U+001C..U+001F.
UNICODE_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501

PRODUCT_FIELDS = (
    "id",
    "title",
    "description",
    "category",
    "price",
    "brand",
    "sku",
    "stock",
    "thumbnail",
    "images",
    "tags",
)
TEXT_FIELDS = ("title", "description", "category", "brand", "sku", "thumbnail")
LIST_FIELDS = ("images", "tags")


# --- the JSON value model ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Num:
    """A JSON number as written in the feed; ``value`` is its exact value."""

    literal: str

    @property
    def value(self) -> Decimal:
        return Decimal(self.literal)

    @property
    def is_int_literal(self) -> bool:
        return not any(mark in self.literal for mark in ".eE")

    def __repr__(self) -> str:
        return self.literal if len(self.literal) <= 60 else f"{self.literal[:40]}…({len(self.literal)} chars)"


Json: TypeAlias = bool | Num | str | list["Json"] | dict[str, "Json"] | None


@dataclass(frozen=True, slots=True)
class Style:
    """How a feed writes its JSON: escapes and spacing (never changes what an item means)."""

    ascii_only: bool = False  # every non-ASCII character as a \\u escape
    spaced: bool = False  # ", " and ": " instead of compact separators


def join_pairs(text: str) -> str:
    """What a JSON reader makes of ``text`` written with one escape per code point: adjacent surrogate
    halves become one astral character; a lone half stays."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _quote(text: str, style: Style) -> str:
    quoted = json.dumps(text, ensure_ascii=style.ascii_only)
    if not style.ascii_only and has_lone_surrogate(quoted):
        quoted = "".join(f"\\u{ord(c):04x}" if "\ud800" <= c <= "\udfff" else c for c in quoted)
    return quoted


def dumps(value: Json, style: Style = Style()) -> bytes:
    """The JSON text of ``value`` (never a raw newline: one NDJSON line)."""
    with deep_stack():
        return _dumps(value, style)


def _dumps(value: Json, style: Style) -> bytes:
    parts: list[str] = []
    comma, colon = (", ", ": ") if style.spaced else (",", ":")

    def write(item: Json) -> None:
        if item is None:
            parts.append("null")
        elif item is True:
            parts.append("true")
        elif item is False:
            parts.append("false")
        elif isinstance(item, Num):
            parts.append(item.literal)
        elif isinstance(item, str):
            parts.append(_quote(item, style))
        elif isinstance(item, list):
            parts.append("[")
            for index, element in enumerate(item):
                if index:
                    parts.append(comma)
                write(element)
            parts.append("]")
        else:
            parts.append("{")
            for index, (key, element) in enumerate(item.items()):
                if index:
                    parts.append(comma)
                parts.append(_quote(key, style))
                parts.append(colon)
                write(element)
            parts.append("}")

    write(value)
    return "".join(parts).encode("utf-8")


def int_text(number: Num) -> str:
    """An integer literal's value in decimal digits (``-0`` is ``0``; no limit on the digits)."""
    value = number.value
    return "0" if value == 0 else format(value, "f")


def depth(value: Json) -> int:
    """Nesting of containers: a scalar is 0, ``[]`` is 1, ``[[1]]`` is 2."""
    deepest = 0
    stack: list[tuple[Json, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list):
            deepest = max(deepest, level + 1)
            stack.extend((element, level + 1) for element in item)
        elif isinstance(item, dict):
            deepest = max(deepest, level + 1)
            stack.extend((element, level + 1) for element in item.values())
    return deepest


def _walk(value: Json) -> list[Json]:
    """Every value inside ``value`` (itself included), and every object key as a string."""
    found: list[Json] = []
    stack: list[Json] = [value]
    while stack:
        item = stack.pop()
        found.append(item)
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            found.extend(item.keys())
            stack.extend(item.values())
    return found


def _same_scalar(stored: Any, sent: Json) -> bool:
    if sent is None:
        return stored is None
    if isinstance(sent, bool):
        return isinstance(stored, bool) and stored == sent
    if isinstance(sent, Num):
        return isinstance(stored, int | Decimal) and not isinstance(stored, bool) and stored == sent.value
    return isinstance(sent, str) and isinstance(stored, str) and stored == sent


def same_json(stored: Any, sent: Json) -> bool:
    """``stored`` (parsed with exact numbers) is ``sent``: same types (a bool is not a number), numbers
    of equal exact value, identical strings and keys. Iterative: values nest hundreds of levels deep."""
    pending: list[tuple[Any, Json]] = [(stored, sent)]
    while pending:
        have, want = pending.pop()
        if isinstance(want, list):
            if not isinstance(have, list) or len(have) != len(want):
                return False
            pending.extend(zip(have, want, strict=True))
        elif isinstance(want, dict):
            if not isinstance(have, dict) or have.keys() != want.keys():
                return False
            pending.extend((have[key], element) for key, element in want.items())
        elif not _same_scalar(have, want):
            return False
    return True


@contextmanager
def deep_stack() -> Iterator[None]:
    """Room for this module's own recursion (writing and reading values 320 levels deep) however deep
    the caller's stack is (pytest, hypothesis, asyncio); the engine never runs inside it."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def parse_exact(text: str) -> Any:
    """Stored JSON text with exact numbers (every number a Decimal)."""
    with deep_stack():
        return json.loads(text, parse_float=Decimal, parse_int=Decimal)


# --- the oracle -------------------------------------------------------------------------------------

Kind = Literal["good", "bad", "maybe"]
# A column's predicate on the stored value, and what it expects (for messages).
Check = tuple[Callable[[Any], bool], str]


@dataclass
class Verdict:
    """What the promise requires of one item.

    ``good``: stored exactly (every check holds) unless its id was taken by an earlier item, then an item
    error "duplicate"; ``bad``: an item error; ``maybe``: either an item error or stored faithfully.
    """

    kind: Kind = "good"
    why: list[str] = field(default_factory=list)
    keys: tuple[str, ...] = ()  # the external ids it may be stored under (one when good)
    checks: dict[str, Check] = field(default_factory=dict)
    category: str | None = None  # the category text as sent (after reading)

    def bad(self, why: str) -> None:
        self.kind = "bad"
        self.why.append(why)

    def maybe(self, why: str) -> None:
        if self.kind == "good":
            self.kind = "maybe"
        self.why.append(f"(maybe) {why}")


def strip_forms(text: str) -> set[str]:
    """The text as sent, and stripped by either definition of whitespace."""
    return {text, text.strip(), text.strip(UNICODE_WS)}


def exactly(expected: str | int | None) -> Check:
    """The stored value is ``expected``, of its very type (a bool is not an int)."""

    def ok(stored: Any) -> bool:
        return type(stored) is type(expected) and stored == expected

    return ok, _short(expected, 200)


def one_of(allowed: set[str | None]) -> Check:
    def ok(stored: Any) -> bool:
        return (stored is None or isinstance(stored, str)) and stored in allowed

    return ok, f"one of {_short(sorted(allowed, key=repr), 200)}"


def _text_check(sent: str) -> Check:
    forms = strip_forms(sent)
    return (lambda stored: isinstance(stored, str) and stored in forms), f"{sent!r} (or stripped)"


def _is_blank(text: str) -> Literal["blank", "loosely", "no"]:
    """Blank by both definitions of whitespace, by one only, or not blank."""
    strict, loose = text.strip(UNICODE_WS) == "", text.strip() == ""
    return "blank" if strict and loose else "loosely" if strict or loose else "no"


def _json_list_check(sent: list[str] | None) -> Check:
    forms = [strip_forms(element) for element in sent or []]

    def ok(stored: Any) -> bool:
        try:
            parsed = json.loads(stored)
        except (TypeError, ValueError):
            return False
        return (
            isinstance(parsed, list)
            and len(parsed) == len(forms)
            and all(isinstance(a, str) and a in b for a, b in zip(parsed, forms, strict=True))
        )

    return ok, f"JSON array {sent or []!r} (elements maybe stripped)"


def _metadata_check(extras: dict[str, Json]) -> Check:
    def ok(stored: Any) -> bool:
        try:
            return isinstance(stored, str) and same_json(parse_exact(stored), extras)
        except (ValueError, RecursionError):
            return False

    return ok, f"JSON object equal to {_short(extras)} (exact numbers, strings as sent)"


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


def _numeric_text(text: str) -> Decimal | None:
    """The value of a number written as a string, when any reader might take it as one."""
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    return value if value.is_finite() else None


def _exact_int(value: Decimal) -> int | None:
    exact = Fraction(value)
    return int(exact) if exact.denominator == 1 else None


def _minor_units(value: Decimal) -> int | None:
    """The USD price in cents, when it is exact (at most 2 decimals) and fits an int64; else None."""
    cents = Fraction(value) * 100
    if cents.denominator != 1 or not 0 <= cents <= INT64_MAX:
        return None
    return int(cents)


def _number_ok_in_extras(number: Num) -> bool:
    """A number every exact store keeps as is: an int64, or a double that is exactly its literal."""
    if number.is_int_literal:
        return INT64_MIN <= int(number.value) <= INT64_MAX
    as_float = float(number.literal)
    return as_float not in (float("inf"), float("-inf")) and Decimal(repr(as_float)) == number.value


def judge(item: Json) -> Verdict:
    """The oracle: what the promise requires of ``item``, decided from the item alone."""
    verdict = Verdict()
    if not isinstance(item, dict):
        verdict.bad(f"not an object: {type(item).__name__}")
        return verdict
    checks = verdict.checks
    checks["currency"] = exactly("USD")

    # id: a non-empty string as sent, or an integer (not a bool) within int64.
    ident = item.get("id", ...)
    if ident is ...:
        verdict.bad("no id")
    elif isinstance(ident, Num) and ident.is_int_literal:
        verdict.keys = (int_text(ident),)
        if not INT64_MIN <= int(ident.value) <= INT64_MAX:
            verdict.maybe("id beyond int64")
    elif isinstance(ident, str):
        if has_lone_surrogate(ident):
            verdict.bad("id holds a lone surrogate")
        elif "\x00" in ident:
            verdict.bad("id holds a NUL character")  # refused: SQLite's JSON functions end text at NUL
        elif _is_blank(ident) == "blank":
            verdict.bad("blank id")
        elif strip_forms(ident) != {ident}:
            verdict.maybe("id with whitespace around it")
            verdict.keys = tuple(sorted(form for form in strip_forms(ident) if form))
        else:
            verdict.keys = (ident,)
    else:
        verdict.bad(f"id is {_short(ident, 40)}")

    for name in TEXT_FIELDS:
        value = item.get(name, ...)
        required = name in ("title", "category")
        if value is ...:
            if required:
                verdict.bad(f"no {name}")
            else:
                checks[name] = exactly("" if name == "description" else None)
        elif value is None and not required:
            if name == "description":
                verdict.maybe("description is null")
                checks[name] = exactly("")
            else:
                checks[name] = exactly(None)
        elif not isinstance(value, str):
            verdict.bad(f"{name} is {type(value).__name__}")
        elif has_lone_surrogate(value):
            verdict.bad(f"{name} holds a lone surrogate")
        elif required and _is_blank(value) != "no":
            if _is_blank(value) == "blank":
                verdict.bad(f"blank {name}")
            else:
                verdict.maybe(f"{name} blank by one definition of whitespace")
                checks[name] = _text_check(value)
        elif _is_blank(value) != "no" and name != "description":
            checks[name] = one_of({None, "", *strip_forms(value)})
        else:
            checks[name] = _text_check(value)
        if name == "category" and isinstance(value, str):
            verdict.category = value

    checks.pop("category", None)  # the category's name is checked on the categories table
    price = item.get("price", ...)
    if price is ...:
        verdict.bad("no price")
    elif isinstance(price, Num) or (isinstance(price, str) and _numeric_text(price) is not None):
        exact = price.value if isinstance(price, Num) else _numeric_text(price)
        assert exact is not None
        minor = _minor_units(exact)
        if minor is None:
            verdict.bad(f"price {_short(price, 60)} is negative, finer than a cent or too large")
        else:
            if isinstance(price, str):
                verdict.maybe("price is a numeric string")
            checks["price_minor"] = exactly(minor)
    else:
        verdict.bad(f"price is {_short(price, 60)}")

    stock = item.get("stock", ...)
    if stock is ... or stock is None:
        checks["stock"] = exactly(None)
    elif isinstance(stock, Num) or (isinstance(stock, str) and _numeric_text(stock) is not None):
        exact = stock.value if isinstance(stock, Num) else _numeric_text(stock)
        assert exact is not None
        count = _exact_int(exact)
        if count is None or not INT64_MIN <= count <= INT64_MAX:
            verdict.bad(f"stock {_short(stock, 60)} is not an int64")
        else:
            if not (isinstance(stock, Num) and stock.is_int_literal):
                verdict.maybe("stock is a whole number not written as an integer")
            checks["stock"] = exactly(count)
    else:
        verdict.bad(f"stock is {_short(stock, 60)}")

    for name in LIST_FIELDS:
        value = item.get(name, ...)
        if value is ...:
            checks[name] = _json_list_check([])
        elif value is None:
            verdict.maybe(f"{name} is null")
            checks[name] = _json_list_check([])
        elif not isinstance(value, list) or not all(isinstance(element, str) for element in value):
            verdict.bad(f"{name} is not a list of strings")
        elif any(has_lone_surrogate(element) for element in value if isinstance(element, str)):
            verdict.bad(f"{name} holds a lone surrogate")
        else:
            checks[name] = _json_list_check([element for element in value if isinstance(element, str)])

    extras = {key: value for key, value in item.items() if key not in PRODUCT_FIELDS}
    checks["metadata"] = _metadata_check(extras)
    for inside in _walk(extras):
        if isinstance(inside, Num) and not _number_ok_in_extras(inside):
            verdict.maybe(f"extra number {inside!r} beyond int64 or a double")
        elif isinstance(inside, str) and has_lone_surrogate(inside):
            verdict.maybe("extra text with a lone surrogate")
    if depth(extras) > MUST_STORE_DEPTH:
        verdict.maybe(f"extras nested {depth(extras)} deep")
    if verdict.kind == "bad":
        verdict.checks = {}
    return verdict


# --- feeds ------------------------------------------------------------------------------------------

Format = Literal["dummyjson", "ndjson"]


@dataclass(frozen=True, slots=True)
class Delete:
    """A field removed from the product."""


DELETE = Delete()
Change = Json | Delete


@dataclass(frozen=True)
class Base:
    """The known-good product of this position (``make_product``), with its id as an int or a string."""

    str_id: bool = False


@dataclass(frozen=True)
class Mutated:
    """The product of this position with fields replaced or removed and extra fields added."""

    str_id: bool
    changes: tuple[tuple[str, Change], ...]


@dataclass(frozen=True)
class Whole:
    """An item that is any JSON value but an object."""

    value: Json


@dataclass(frozen=True)
class Garbage:
    """An NDJSON line that is not JSON: bytes, or a product cut short, or one with a byte not UTF-8."""

    data: bytes
    kind: Literal["bytes", "truncated", "not-utf8"] = "bytes"


@dataclass(frozen=True)
class SameId:
    """This position's product (with changes) carrying the id of an earlier item, or its exact copy."""

    back: int  # how far back the earlier item is (taken modulo the position)
    copy: bool
    changes: tuple[tuple[str, Change], ...] = ()


Spec = Base | Mutated | Whole | Garbage | SameId


@dataclass(frozen=True)
class FeedSpec:
    fmt: Format
    specs: tuple[Spec, ...]
    batch_size: int = 1000
    page_size: int = 100
    style: Style = Style()
    total_header: bool = True  # NDJSON: X-Total-Count (without it the engine maps in worker processes)
    crlf: bool = False
    blank_lines: tuple[int, ...] = ()  # NDJSON: blank lines before these item positions
    write_size: int = 0  # NDJSON: write the body in pieces of this size (0: at once)


@dataclass
class Item:
    position: int
    value: Json | None  # None for a garbage line (see raw)
    raw: bytes
    garbage: bool = False


def base_product(position: int, str_id: bool) -> dict[str, Json]:
    product = make_product(position + 1)
    result: dict[str, Json] = {key: to_json(value) for key, value in product.items()}
    result["id"] = str(position + 1) if str_id else Num(str(position + 1))
    return result


def to_json(value: Any) -> Json:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return Num(repr(value))
    if isinstance(value, list):
        return [to_json(element) for element in value]
    if isinstance(value, dict):
        return {str(key): to_json(element) for key, element in value.items()}
    raise TypeError(value)


def _apply(product: dict[str, Json], changes: Sequence[tuple[str, Change]]) -> dict[str, Json]:
    result = dict(product)
    for key, change in changes:
        if isinstance(change, Delete):
            result.pop(key, None)
        else:
            result[key] = change
    return result


def build_items(feed: FeedSpec) -> list[Item]:
    items: list[Item] = []
    for position, spec in enumerate(feed.specs):
        value: Json | None
        if isinstance(spec, Base):
            value = base_product(position, spec.str_id)
        elif isinstance(spec, Mutated):
            value = _apply(base_product(position, spec.str_id), spec.changes)
        elif isinstance(spec, Whole):
            value = spec.value
        elif isinstance(spec, Garbage):
            items.append(Item(position, None, spec.data, garbage=True))
            continue
        else:
            if position == 0:
                value = base_product(position, False)
            else:
                earlier = items[position - 1 - spec.back % position]
                if spec.copy:
                    items.append(replace(earlier, position=position))
                    continue
                product = _apply(base_product(position, False), spec.changes)
                if isinstance(earlier.value, dict) and "id" in earlier.value:
                    product["id"] = earlier.value["id"]
                value = product
        items.append(Item(position, value, dumps(value, feed.style)))
    return items


def amplify(feed: FeedSpec, copies: int) -> FeedSpec:
    """The feed's items ``copies`` times over: each copy's known-good products get new ids (they are
    products of other positions), fuzzed ids repeat (so they are duplicates of the first copy)."""
    return replace(feed, specs=feed.specs * copies, blank_lines=())


def ndjson_body(feed: FeedSpec, items: Sequence[Item]) -> bytes:
    ending = b"\r\n" if feed.crlf else b"\n"
    blanks = set(feed.blank_lines)
    lines: list[bytes] = []
    for item in items:
        if item.position in blanks:
            lines.append(b" \t" if item.position % 2 else b"")
        lines.append(item.raw)
    return ending.join(lines) + (ending if items and not feed.crlf else b"")


class FuzzUpstream:
    """The feed's bytes on loopback: ``/products`` as DummyJSON pages, ``/feed.ndjson`` as NDJSON."""

    def __init__(self, feed: FeedSpec, items: Sequence[Item]) -> None:
        self.feed = feed
        self.items = items
        self.ndjson = ndjson_body(feed, items)
        self.pages_served = 0
        self._runner: web.AppRunner | None = None

    async def _products(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "30"))
        skip = int(request.query.get("skip", "0"))
        page = self.items[skip:] if limit == 0 else self.items[skip : skip + limit]
        self.pages_served += 1
        sep = b", " if self.feed.style.spaced else b","
        body = b"".join(
            [
                b'{"products":[',
                sep.join(item.raw for item in page),
                b'],"total":%d,"skip":%d,"limit":%d}' % (len(self.items), skip, len(page)),
            ]
        )
        return web.Response(body=body, content_type="application/json")

    async def _ndjson(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        if self.feed.total_header:
            response.headers["X-Total-Count"] = str(len(self.items))
        await response.prepare(request)
        size = self.feed.write_size or len(self.ndjson) or 1
        for start in range(0, len(self.ndjson), size):
            await response.write(self.ndjson[start : start + size])
        await response.write_eof()
        return response

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/products", self._products)
        app.router.add_get("/feed.ndjson", self._ndjson)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        path = "/products" if self.feed.fmt == "dummyjson" else "/feed.ndjson"
        return f"http://{host}:{port}{path}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- strategies -------------------------------------------------------------------------------------

SPECIAL_STRINGS = [
    "",
    " ",
    " \t\r\n ",
    "\u00a0",
    "\u3000",
    "\x1c",
    " \x1f x \x1c ",
    "\x00",
    "a\x00b",
    "\u200f\u05e9\u05dc\u05d5\u05dd",  # RTL mark, Hebrew
    "\u202eabc\u202c",
    "e\u0301\u0327\u0308",  # combining marks
    "\U0001f600\U0001f1fa\U0001f1f8",
    "\U0001d518\U0001d52b\U0001d526",  # mathematical letters (astral)
    "\U0010ffff",
    "\ufeff",
    "\uffff",
    "日本語",
    "家电",
    "Ελληνικά",
    "кириллица",
    "العربية",
    "한국어",
    "Straße",
    "ǅ",
    "%%%",
    "--",
    "\\",
    '"',
    "</script>",
    "\u2028\u2029",
    "null",
    "true",
    "0",
    " 5 ",
    "-1",
    "1e3",
    "19.99",
    "1_000",
    "Infinity",
    "NaN",
    "0x10",
]

_digits = st.text(alphabet="0123456789", min_size=1, max_size=12)


@st.composite
def _long_digits(draw: st.DrawFn) -> str:
    pattern = draw(_digits)
    length = draw(st.integers(20, 5000))
    return str(draw(st.integers(1, 9))) + (pattern * (length // len(pattern) + 1))[: length - 1]


def _int_literals() -> st.SearchStrategy[Num]:
    edges = [0, 1, -1, 2**31, 2**53 + 1, INT64_MAX, INT64_MAX + 1, INT64_MIN, INT64_MIN - 1, 2**64 - 1]
    edges += [2**64, -(2**64), 10**30, -(10**30)]
    ints = st.one_of(
        st.sampled_from(edges), st.integers(-1000, 1000), st.integers(), st.integers(-(2**70), 2**70)
    )
    return st.one_of(
        ints.map(lambda n: Num(str(n))),
        st.just(Num("-0")),
        st.tuples(st.booleans(), _long_digits()).map(lambda t: Num(("-" if t[0] else "") + t[1])),
    )


@st.composite
def _decimal_literal(draw: st.DrawFn) -> Num:
    sign = draw(st.sampled_from(["", "", "-"]))
    whole = draw(st.one_of(st.just("0"), st.integers(1, 10**25).map(str)))
    fraction = draw(st.one_of(st.just(""), st.text(alphabet="0123456789", min_size=1, max_size=40)))
    literal = sign + whole + (f".{fraction}" if fraction else "")
    if draw(st.booleans()):
        mark = draw(st.sampled_from(["e", "E"]))
        exp_sign = draw(st.sampled_from(["", "+", "-"]))
        zeros = draw(st.sampled_from(["", "0", "00"]))
        exponent = draw(st.one_of(st.integers(0, 20), st.integers(0, 500)))
        literal += f"{mark}{exp_sign}{zeros}{exponent}"
    return Num(literal)


def _float_literal(value: float) -> Num:
    return Num(repr(value))


@st.composite
def _price_literal(draw: st.DrawFn) -> Num:
    """Prices as a feed writes them: mostly exact cents, in every way JSON can write them."""
    cents = draw(
        st.one_of(
            st.integers(0, 10**6),
            st.integers(0, INT64_MAX + 10),
            st.sampled_from([0, 1, 999, 1999, INT64_MAX, INT64_MAX + 1]),
        )
    )
    form = draw(st.sampled_from(["plain", "zeros", "exp", "scaled", "int"]))
    whole, part = divmod(cents, 100)
    if form == "plain":
        return Num(f"{whole}.{part:02d}")
    if form == "zeros":
        return Num(f"{whole}.{part:02d}{'0' * draw(st.integers(1, 30))}")
    if form == "exp":
        return Num(f"{cents}e-2")
    if form == "scaled":
        return Num(f"0.{cents:d}E+{len(str(cents)) - 2}" if cents >= 100 else f"{cents}E-2")
    return Num(str(whole))


SPECIAL_NUMBERS = [
    "19.9900000000000000001",
    "19.989999999999999999",
    "1.000000000000000000000000000001",
    "0.1000000000000000055511151231257827",
    "12345678901234567.89",
    "92233720368547758.07",
    "92233720368547758.08",
    "0.005",
    "1e400",
    "-1e400",
    "1e-400",
    "0e999",
    "-0.0",
    "-0.00",
    "5e-324",
    "2.5e-324",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "9223372036854775807.0",
    "9223372036854775808.0",
    "5.0000000000000000001",
    "123456789012345678901234567890",
]


def numbers() -> st.SearchStrategy[Num]:
    return st.one_of(
        _int_literals(),
        _decimal_literal(),
        st.floats(allow_nan=False, allow_infinity=False).map(_float_literal),
        _price_literal(),
        st.sampled_from(SPECIAL_NUMBERS).map(Num),
    )


@st.composite
def _with_lone_surrogate(draw: st.DrawFn) -> str:
    half = chr(draw(st.integers(0xD800, 0xDFFF)))
    return join_pairs(draw(st.text(max_size=5)) + half + draw(st.text(max_size=5)))


@st.composite
def _long_string(draw: st.DrawFn) -> str:
    unit = draw(st.text(min_size=1, max_size=4))
    length = draw(st.integers(1000, 20000))
    return (unit * (length // len(unit) + 1))[:length]


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(SPECIAL_STRINGS),
        st.text(),
        st.text(alphabet=st.characters(min_codepoint=0x10000)),  # astral only
        st.tuples(
            st.sampled_from(["", " ", "\t", "\u00a0", "\x1c"]), st.text(), st.sampled_from(["", " "])
        ).map(lambda t: t[0] + t[1] + t[2]),
        _long_string(),
        _with_lone_surrogate(),
    )


SPECIAL_KEYS = [
    "",
    "ID",
    "Title",
    "price ",
    "__proto__",
    "model_config",
    "meta",
    "\ud800",
    "\udfff x",
    "a\x00",
]


def keys() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(SPECIAL_KEYS),
        strings().filter(lambda key: len(key) < 200),
    ).filter(lambda key: key not in PRODUCT_FIELDS)


def scalars() -> st.SearchStrategy[Json]:
    return st.one_of(st.none(), st.booleans(), numbers(), strings())


def _nest(leaf: Json, levels: int, shape: str, key: str) -> Json:
    value = leaf
    for level in range(levels):
        as_list = shape == "list" or (shape == "mixed" and level % 2 == 0)
        value = [value] if as_list else {key: value}
    return value


def json_values() -> st.SearchStrategy[Json]:
    """Any JSON value: any type, size, depth (to 320), number range and string content."""
    small = scalars()
    containers = st.recursive(
        small,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys(), children, max_size=4)
        ),
        max_leaves=12,
    )
    deep = st.builds(
        _nest,
        st.one_of(small, st.just([]), st.just({})),
        st.one_of(st.integers(2, 40), st.integers(200, 320)),
        st.sampled_from(["list", "dict", "mixed"]),
        st.sampled_from(["k", "", "日本"]),
    )
    wide = st.integers(100, 3000).map(lambda n: [Num(str(i)) for i in range(n)])
    return st.one_of(small, containers, deep, wide)


_NASTY: list[Json] = [None, True, False, [], {}, [None], {"": None}, "", " ", Num("0"), Num("-0")]
# Values known to be hard for some field, tried often: hypothesis draws them as often as all the rest.
CURATED: dict[str, list[Json]] = {
    "id": [
        *(Num(str(n)) for n in (1, 7, INT64_MAX, INT64_MAX + 1, INT64_MIN, INT64_MIN - 1, 2**64, -(2**64))),
        Num("1" * 5000),
        Num("7.0"),
        Num("7e0"),
        *["7", "1", " 7", "7 ", "\u00a07", "\x1c7", "a\x00b", "\x00", "日本", "a\ud800", "-", "☃", "e\u0301"],
    ],
    "price": [*map(Num, SPECIAL_NUMBERS), Num("-1"), Num("-0.01"), "19.99", "1e2", " 5 ", "-1", "abc"],
    "stock": [
        *(Num(str(n)) for n in (-1, INT64_MAX, INT64_MAX + 1, INT64_MIN, INT64_MIN - 1, 2**64, 10**30)),
        *map(Num, ["5.0", "5.5", "1e2", "5.0000000000000000001", "9223372036854775807.0", "1e400"]),
        "12",
        " 12 ",
        "1_000",
        "5.0",
        "x",
    ],
    "text": [*SPECIAL_STRINGS, "a\ud800", "\udc00", "\ud800\ud800"],
    "list": [["\ud800"], [" a "], [""], ["\x00"], [None], [Num("1")], [[]], ["a", Num("1")], "a"],
}


def field_values(name: str) -> st.SearchStrategy[Change]:
    """Values for one field: curated hard cases, values biased to the field, and anything at all."""
    anything: st.SearchStrategy[Change] = st.one_of(st.just(DELETE), json_values())
    biased: st.SearchStrategy[Json]
    curated = CURATED.get(name) or CURATED["list" if name in LIST_FIELDS else "text"]
    if name == "id":
        biased = st.one_of(_int_literals(), strings())
    elif name in ("price", "stock"):
        biased = st.one_of(numbers(), strings().filter(lambda s: _numeric_text(s) is not None))
    elif name in LIST_FIELDS:
        biased = st.lists(strings(), max_size=5)
    else:
        biased = strings()
    return st.one_of(st.sampled_from([*curated, *_NASTY]), biased, anything)


def hard_values(target: str) -> list[Spec]:
    """Every curated hard value for ``target``: a product field, ``"extra value"`` (the value of an
    extra field), ``"extra key"`` (the name of one) or ``"whole item"`` (items that are not objects)."""
    everything = [*_NASTY, *(value for values in CURATED.values() for value in values)]
    everything += [
        _nest(Num("1"), levels, shape, "k") for levels in (254, 255, 256, 320) for shape in ("list", "dict")
    ]
    everything += [[Num(str(i)) for i in range(3000)], "x" * 100_000, "\U0001f600" * 20_000]
    if target == "extra value":
        return [Mutated(index % 2 == 1, (("meta", value),)) for index, value in enumerate(everything)]
    if target == "extra key":
        names = [key for key in [*SPECIAL_KEYS, *SPECIAL_STRINGS] if key not in PRODUCT_FIELDS]
        return [Mutated(False, ((name, Num("1")),)) for name in names]
    if target == "whole item":
        return [Whole(value) for value in everything if not isinstance(value, dict)]
    curated = CURATED.get(target) or CURATED["list" if target in LIST_FIELDS else "text"]
    return [Mutated(index % 2 == 1, ((target, value),)) for index, value in enumerate([*curated, *_NASTY])]


def _changes(max_fields: int) -> st.SearchStrategy[tuple[tuple[str, Change], ...]]:
    field_change = st.sampled_from(PRODUCT_FIELDS).flatmap(
        lambda name: st.tuples(st.just(name), field_values(name))
    )
    extra_change = st.tuples(keys(), json_values())
    # Two field changes for one extra field: the fields are where the rules are.
    change = st.one_of(field_change, field_change, extra_change)
    return st.lists(change, min_size=1, max_size=max_fields).map(tuple)


@st.composite
def _garbage(draw: st.DrawFn) -> Garbage:
    kind = draw(st.sampled_from(["bytes", "truncated", "not-utf8"]))
    if kind == "bytes":
        data = draw(st.binary(min_size=1, max_size=60))
    else:
        line = dumps(base_product(draw(st.integers(0, 10**6)), False))
        if kind == "truncated":
            data = line[: draw(st.integers(1, len(line) - 1))]
        else:
            at = line.index(b'"title":"') + len(b'"title":"')
            data = (
                line[:at]
                + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"]))
                + line[at:]
            )
    data = data.replace(b"\n", b"?")
    if not data.strip():
        data = b"#" + data
    return Garbage(data, "bytes" if kind == "bytes" else "truncated" if kind == "truncated" else "not-utf8")


def specs(fmt: Format, max_fields: int = 4) -> st.SearchStrategy[Spec]:
    not_objects = json_values().filter(lambda value: not isinstance(value, dict))
    base = st.builds(Base, st.booleans())
    mutated = st.builds(Mutated, st.booleans(), _changes(max_fields))
    # Weighted by repetition: mostly products (known-good or with fuzzed fields), some of the rest.
    options: list[st.SearchStrategy[Spec]] = [base, base, mutated, mutated, mutated]
    options += [
        st.builds(Whole, not_objects),
        st.builds(SameId, st.integers(0, 50), st.booleans(), st.just(())),
    ]
    if fmt == "ndjson":
        options.append(_garbage())
    return st.one_of(options)


@st.composite
def feeds(
    draw: st.DrawFn,
    max_items: int = 20,
    spec: Callable[[Format], st.SearchStrategy[Spec]] | None = None,
    small_batches: bool = False,
) -> FeedSpec:
    fmt: Format = draw(st.sampled_from(["dummyjson", "ndjson"]))
    fuzzed = draw(st.lists((spec or specs)(fmt), min_size=1, max_size=max_items))
    # Known-good products around the fuzzed items: cheap to draw, and they move the fuzzed ones across
    # page and batch boundaries.
    before, after = draw(st.integers(0, max_items // 2)), draw(st.integers(0, max_items // 2))
    items = (Base(),) * before + tuple(fuzzed) + (Base(str_id=True),) * after
    sizes = [1, 2, 3, 7] if small_batches else [1, 3, 7, 1000]
    blank_lines: tuple[int, ...] = ()
    if fmt == "ndjson" and items:
        blank_lines = tuple(draw(st.lists(st.integers(0, len(items) - 1), max_size=3)))
    return FeedSpec(
        fmt=fmt,
        specs=items,
        batch_size=draw(st.sampled_from(sizes)),
        page_size=draw(st.sampled_from([1, 2, 3, 10, 100] if small_batches else [1, 3, 10, 100])),
        style=Style(ascii_only=draw(st.booleans()), spaced=draw(st.booleans())),
        total_header=draw(st.booleans()) if fmt == "ndjson" else True,
        crlf=fmt == "ndjson" and draw(st.booleans()),
        blank_lines=blank_lines,
        write_size=draw(st.sampled_from([0, 0, 7, 4096])) if fmt == "ndjson" else 0,
    )


# --- running a feed and checking the promise --------------------------------------------------------


@dataclass
class Tally:
    """What the fuzz pushed through the engine (first runs; re-runs are not counted again)."""

    feeds: dict[str, int] = field(default_factory=lambda: {"dummyjson": 0, "ndjson": 0})
    items: int = 0
    bad: int = 0  # items the oracle says must be item errors
    maybe: int = 0  # items that may be either
    errors: int = 0  # item errors recorded
    stored: int = 0
    failed_runs: int = 0

    def line(self) -> str:
        formats = "+".join(fmt for fmt, count in self.feeds.items() if count)
        return (
            f"fuzz: {self.items} items in {sum(self.feeds.values())} feeds "
            f"({self.feeds['dummyjson']} dummyjson, {self.feeds['ndjson']} ndjson; {self.bad} bad, "
            f"{self.maybe} either way, {self.errors} item errors, {self.stored} stored), "
            f"formats {formats}: {self.failed_runs} failed runs"
        )


async def sync_once(h: Harness, url: str, pool: MappingPool | None) -> RunRecord:
    """One run of the real engine, finished as the runner would; a run that fails raises (its own
    exception, so that hypothesis tells failures of different causes apart)."""
    run = await h.ledger.start_run("fuzz", url)
    ctx = RunContext(
        run=run,
        ledger=h.ledger,
        settings=h.settings,
        sink=CatalogTablesSink(h.ledger, h.db),
        http=h.http,
        source_url=url,
        mapping_pool=pool,
    )
    try:
        await run_catalog_sync(ctx)
    except Exception as exc:
        await h.ledger.finish_run(run.id, "error", error_message=f"{type(exc).__name__}: {exc}"[:2000])
        exc.add_note(f"the run failed ({type(exc).__name__}): item content must never fail a run")
        raise
    await h.ledger.finish_run(run.id, "success")
    finished = await h.ledger.get_run(run.id)
    assert finished is not None
    return finished


def _describe(item: Item, verdict: Verdict | None = None) -> str:
    text = item.raw.decode("utf-8", "backslashreplace")
    shown = text if len(text) <= 600 else f"{text[:600]}…({len(item.raw)} bytes)"
    why = f" [{verdict.kind}: {'; '.join(verdict.why)}]" if verdict and verdict.why else ""
    return f"item {item.position}: {shown}{why}"


def ascii_slug(text: str) -> str | None:
    """The handle of an ASCII name (lower case, a dash for each run of other characters); None for other
    text, whose handle depends on the transliteration."""
    if not text.isascii():
        return None
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _category_clash(reason: str, category: str | None, stored_categories: set[str]) -> bool:
    """A product refused because its category's name differs from that of the category, stored before,
    that has the same handle (``T-Shirts`` then ``t shirts``): the reason names the other category."""
    if category is None:
        return False
    mine = category.strip(UNICODE_WS)
    for other in stored_categories:
        if other == mine or (other not in reason and repr(other) not in reason):
            continue
        slugs = ascii_slug(other), ascii_slug(mine)
        if None in slugs or slugs[0] == slugs[1]:
            return True
    return False


def _error_id_plausible(external_id: str | None, item: Item) -> bool:
    if external_id is None or item.garbage:
        return True
    if not isinstance(item.value, dict) or "id" not in item.value:
        return False
    ident = item.value["id"]
    if isinstance(ident, str):
        return external_id in strip_forms(ident) or has_lone_surrogate(ident)
    if isinstance(ident, Num) and ident.is_int_literal:
        return external_id in (int_text(ident), ident.literal)
    return True


@dataclass
class Outcome:
    stored: dict[str, int]  # external id -> position of the item it holds
    errors: list[tuple[int, str | None, str]]
    products: dict[str, Mapping[str, Any]]


async def check_run(
    h: Harness,
    run: RunRecord,
    items: Sequence[Item],
    verdicts: Sequence[Verdict],
    feed: FeedSpec,
    created_run: int,
) -> Outcome:
    """Every check of the promise on one finished run; returns what it stored and refused."""
    n = len(items)
    assert run.status == "success", f"run {run.id} ended {run.status}: {run.error_message}"
    assert run.processed == n, f"processed {run.processed} of {n} items"
    # A DummyJSON feed states its total; an NDJSON one may (X-Total-Count), which is not item content.
    allowed_totals = (n,) if feed.fmt == "dummyjson" else (n, None)
    assert run.total in allowed_totals, f"total {run.total}, expected {n}"
    errors = await h.run_errors(run.id)
    positions = [position for position, _, _ in errors]
    assert len(positions) == len(set(positions)), f"several item errors at one position: {errors}"
    assert all(0 <= p < n for p in positions), f"item error outside the feed: {errors}"
    by_position = {position: (external_id, reason) for position, external_id, reason in errors}
    products = await h.products()
    stored: dict[str, int] = {}  # external id -> position of its item
    stored_categories: set[str] = set()  # category names of the products stored so far
    for item, verdict in zip(items, verdicts, strict=True):
        error = by_position.get(item.position)
        if error is not None:
            external_id, reason = error
            assert isinstance(reason, str) and reason, f"empty reason for {_describe(item)}"
            assert _error_id_plausible(external_id, item), (
                f"item error names id {external_id!r}, not the item's: {_describe(item)}"
            )
            if verdict.kind == "good":
                key = verdict.keys[0]
                clash = _category_clash(reason, verdict.category, stored_categories)
                if key in stored:
                    assert "duplicate" in reason.lower() or clash, (
                        f"repeated id {key!r} refused for another reason: {reason!r}; {_describe(item)}"
                    )
                elif not clash:
                    raise AssertionError(
                        f"good item refused ({reason!r}): {_describe(item, verdict)}; "
                        f"stored {_short(products.get(key), 400)}"
                    )
            continue
        assert verdict.kind != "bad", f"bad item has no item error: {_describe(item, verdict)}"
        candidates = [key for key in verdict.keys if key in products]
        assert candidates, f"item neither stored nor an item error: {_describe(item, verdict)}"
        unclaimed = [key for key in candidates if key not in stored]
        assert unclaimed, (
            f"repeated id stored again instead of an item error 'duplicate': {_describe(item, verdict)}; "
            f"first at position {stored[candidates[0]]}"
        )
        row: Mapping[str, Any] = {}
        mismatches: list[str] = []
        mismatch_key = ""
        for key in unclaimed:
            row = products[key]
            mismatches = [
                f"{column}={_short(row[column], 200)} (expected {expected})"
                for column, (ok, expected) in verdict.checks.items()
                if not ok(row[column])
            ]
            if not mismatches:
                stored[key] = item.position
                if verdict.category is not None:
                    stored_categories.add(verdict.category.strip(UNICODE_WS))
                break
            mismatch_key = key
        if mismatches:
            later = [
                other.position
                for other, other_verdict in zip(items, verdicts, strict=True)
                if other.position > item.position and mismatch_key in other_verdict.keys
            ]
            raise AssertionError(
                f"stored product differs from its item: {'; '.join(mismatches)}; {_describe(item, verdict)}"
                + (f"; the same id comes again at positions {later[:10]}" if later else "")
            )
        assert row["created_run"] == created_run, f"created by run {row['created_run']}: {_describe(item)}"
    unaccounted = sorted(set(products) - set(stored))
    assert not unaccounted, f"products no item accounts for: {[_short(k, 80) for k in unaccounted[:10]]}"
    assert n - len(stored) == len(errors), f"{n} items, {len(stored)} stored, {len(errors)} item errors"

    # A category is named after the first product stored in it; one category text is one category.
    first_in_category: dict[int, int] = {}
    category_of_text: dict[str, int] = {}
    for key, position in sorted(stored.items(), key=lambda kv: kv[1]):
        row = products[key]
        sent = verdicts[position].category
        assert sent is not None
        first_in_category.setdefault(row["category_id"], position)
        text = sent.strip(UNICODE_WS)
        assert category_of_text.setdefault(text, row["category_id"]) == row["category_id"], (
            f"category {sent!r} split over two categories; {_describe(items[position])}"
        )
        first = verdicts[first_in_category[row["category_id"]]].category
        assert first is not None
        assert row["category_name"] in strip_forms(first), (
            f"category name {row['category_name']!r}, expected {first!r} (its first product's)"
        )
        assert row["category_handle"], f"empty category handle: {_describe(items[position])}"
    await h.assert_ledger_matches_catalog(run.id)
    return Outcome(stored, errors, products)


async def _checked(
    h: Harness,
    run: RunRecord,
    items: Sequence[Item],
    verdicts: Sequence[Verdict],
    feed: FeedSpec,
    created_run: int,
) -> Outcome:
    """:func:`check_run`, adding the run's item errors to a failure's report."""
    try:
        return await check_run(h, run, items, verdicts, feed, created_run)
    except AssertionError as exc:
        errors = await h.run_errors(run.id)
        exc.add_note(f"run {run.id}: {run.created} created, {run.unchanged} unchanged, item errors:")
        for position, external_id, reason in errors[:40]:
            exc.add_note(f"  item error at {position} (id {_short(external_id, 40)}): {_short(reason, 200)}")
        raise


def fuzz_settings(tmp: Path, feed: FeedSpec) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "source_format": feed.fmt,
        "batch_size": feed.batch_size,
        "page_size": feed.page_size,
        "max_line_bytes": 8 * 1024 * 1024,  # the line limit is a documented run failure, not item content
        "run_timeout_s": 600.0,
    }
    if "max_error_fraction" in Settings.model_fields:
        overrides["max_error_fraction"] = 1.0  # any share of bad items is still a successful run
    return overrides


async def check_feed_async(feed: FeedSpec, pool: MappingPool | None, tally: Tally) -> None:
    items = build_items(feed)
    verdicts = [
        Verdict(kind="bad", why=["not JSON"]) if item.garbage else judge(item.value) for item in items
    ]
    _note(
        f"feed: {feed.fmt}, {len(items)} items, batch_size {feed.batch_size}, page_size {feed.page_size}, "
        f"{feed.style}, X-Total-Count {feed.total_header}, crlf {feed.crlf}, blank lines before "
        f"{list(feed.blank_lines)}, written in pieces of {feed.write_size or 'all'}"
    )
    if len(items) <= 300:  # every item of a small feed; only the ones not good of a larger one
        for item, verdict in zip(items, verdicts, strict=True):
            if len(items) <= 40 or verdict.kind != "good":
                _note(_describe(item, verdict))
    upstream = FuzzUpstream(feed, items)
    url = await upstream.start()
    try:
        with tempfile.TemporaryDirectory(prefix="item-fuzz-") as tmp:
            async with harness(Path(tmp), **fuzz_settings(Path(tmp), feed)) as h:
                try:
                    first = await sync_once(h, url, pool)
                except Exception:
                    tally.failed_runs += 1
                    raise
                one = await _checked(h, first, items, verdicts, feed, first.id)
                tally.feeds[feed.fmt] += 1
                tally.items += len(items)
                tally.bad += sum(v.kind == "bad" for v in verdicts)
                tally.maybe += sum(v.kind == "maybe" for v in verdicts)
                tally.errors += len(one.errors)
                tally.stored += len(one.stored)
                assert first.created == len(one.stored), f"created {first.created}, stored {len(one.stored)}"

                # The same feed again: nothing changes, the same items are refused at the same positions.
                second = await sync_once(h, url, pool)
                two = await _checked(h, second, items, verdicts, feed, first.id)
                assert (second.created, second.updated, second.unchanged) == (0, 0, len(one.stored)), (
                    f"re-run of the same feed: created {second.created}, updated {second.updated}, "
                    f"unchanged {second.unchanged} of {len(one.stored)} stored"
                )
                assert [(p, e) for p, e, _ in two.errors] == [(p, e) for p, e, _ in one.errors], (
                    f"item errors changed on the re-run: {one.errors} then {two.errors}"
                )
                assert [("duplicate" in r) for _, _, r in two.errors] == [
                    ("duplicate" in r) for _, _, r in one.errors
                ], f"duplicate errors changed on the re-run: {one.errors} then {two.errors}"
                assert two.stored == one.stored
                assert two.products == one.products, "the re-run changed stored products"
    finally:
        await upstream.stop()


def _note(text: str) -> None:
    if currently_in_test_context():
        note(text)


def check_feed(feed: FeedSpec, pool: MappingPool | None, tally: Tally) -> None:
    asyncio.run(check_feed_async(feed, pool, tally))
