"""Property-based proof of the promise "one bad product is an item error and never fails a run".

Arbitrary JSON values (any type, size, depth to 320, integers of any magnitude, number literals no
double holds, strings of any Unicode with NUL, RTL marks, combining marks, lone surrogate escapes)
go into every product field and extra fields, and whole items that are not products, mixed with
known-good products in one feed, through the real parse -> validate -> map -> sink path of both
formats: the feed's bytes are written here and served on loopback as DummyJSON pages or NDJSON.

For every feed (on a fresh SQLite file) the run succeeds; every item the independent oracle
(tests/fuzz_feeds.py: ``judge``) calls good is stored exactly as sent, unless an earlier item has its
id, then it is an item error "duplicate"; every bad one is an item error at its position; items the
oracle cannot decide are either; processed equals the feed's items and the ledger equals the catalog.
The same feed again changes nothing and refuses the same items at the same positions.

The default run tries a modest number of feeds; ``pytest -m slow tests/test_item_fuzz.py`` pushes more
than 100,000 items through both formats and prints the figure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from service.transport.offload import MappingPool
from tests.fuzz_feeds import (
    PRODUCT_FIELDS,
    Base,
    FeedSpec,
    Format,
    Garbage,
    Mutated,
    SameId,
    Spec,
    Tally,
    Whole,
    _changes,
    _garbage,
    _int_literals,
    amplify,
    check_feed,
    feeds,
    field_values,
    hard_values,
    json_values,
    keys,
    specs,
    strings,
)

SUPPRESSED = [
    HealthCheck.function_scoped_fixture,
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
    HealthCheck.filter_too_much,
]


# ITEM_FUZZ_SCALE=10 tries ten times as many feeds in every test (for a longer hunt).
SCALE = float(os.environ.get("ITEM_FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max(1, round(max_examples * SCALE)), deadline=None, suppress_health_check=SUPPRESSED
    )


@pytest.fixture(scope="module")
def mapping_pool() -> Iterator[MappingPool]:
    """Worker processes shared by the module's runs (a feed without a total is mapped in them)."""
    pool = MappingPool(2)
    yield pool
    pool.close()


def report(capsys: pytest.CaptureFixture[str], name: str, tally: Tally) -> None:
    with capsys.disabled():
        print(f"\n{name}: {tally.line()}")


def one_field_each(fmt: Format) -> st.SearchStrategy[Spec]:
    """A product with exactly one field (or one extra field) given an arbitrary value."""
    field_change = st.sampled_from(PRODUCT_FIELDS).flatmap(
        lambda name: st.tuples(st.just(name), field_values(name))
    )
    extra = st.tuples(keys(), json_values())
    return st.one_of(
        st.builds(Base, st.booleans()),
        st.builds(Mutated, st.booleans(), st.one_of(field_change, extra).map(lambda c: (c,))),
    )


def test_any_json_value_in_any_field(mapping_pool: MappingPool, capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()

    @fuzz(40)
    @given(feed=feeds(max_items=12, spec=one_field_each))
    def run(feed: FeedSpec) -> None:
        check_feed(feed, mapping_pool, tally)

    run()
    report(capsys, "one field", tally)


def not_products(fmt: Format) -> st.SearchStrategy[Spec]:
    whole = st.builds(Whole, json_values().filter(lambda value: not isinstance(value, dict)))
    options: list[st.SearchStrategy[Spec]] = [st.builds(Base, st.booleans()), whole]
    if fmt == "ndjson":
        options.append(_garbage())
    return st.one_of(options)


def test_items_that_are_not_products(mapping_pool: MappingPool, capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()

    @fuzz(20)
    @given(feed=feeds(max_items=12, spec=not_products))
    def run(feed: FeedSpec) -> None:
        check_feed(feed, mapping_pool, tally)

    run()
    report(capsys, "not products", tally)


CLASHING_NAMES = ["Beauty", "beauty", "BEAUTY", " beauty ", "Beauté", "beauty!", "b-e-a-u-t-y", "日本"]


def same_ids(fmt: Format) -> st.SearchStrategy[Spec]:
    """Products whose ids repeat (exact copies, other content under an earlier id, ids 1, "1", " 1")
    or whose titles and categories clash (one handle for several names)."""
    id_values = st.one_of(_int_literals(), strings(), st.sampled_from(["1", "2", " 1", "1 "]))
    names = st.sampled_from(CLASHING_NAMES)
    clash = st.tuples(st.tuples(st.just("title"), names), st.tuples(st.just("category"), names))
    return st.one_of(
        st.builds(Base, st.booleans()),
        st.builds(SameId, st.integers(0, 8), st.booleans(), st.just(())),
        st.builds(SameId, st.integers(0, 8), st.just(False), _changes(2)),
        st.builds(Mutated, st.booleans(), id_values.map(lambda value: (("id", value),))),
        st.builds(Mutated, st.booleans(), clash.map(tuple)),
        st.builds(SameId, st.integers(0, 8), st.just(False), clash.map(tuple)),
    )


def test_repeated_ids_first_copy_wins(mapping_pool: MappingPool, capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()

    @fuzz(35)
    @given(feed=feeds(max_items=14, spec=same_ids, small_batches=True))
    def run(feed: FeedSpec) -> None:
        check_feed(feed, mapping_pool, tally)

    run()
    report(capsys, "repeated ids", tally)


def test_mixed_feeds(mapping_pool: MappingPool, capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()

    @fuzz(30)
    @given(feed=feeds(max_items=20))
    def run(feed: FeedSpec) -> None:
        check_feed(feed, mapping_pool, tally)

    run()
    report(capsys, "mixed", tally)


@pytest.mark.parametrize("mode", ["dummyjson", "ndjson", "ndjson-in-workers"])
@pytest.mark.parametrize("target", [*PRODUCT_FIELDS, "extra value", "extra key", "whole item"])
def test_hard_values_in_every_field(target: str, mode: str, mapping_pool: MappingPool) -> None:
    """Every curated hard value (tests/fuzz_feeds.py: CURATED) in this field, each in its own item
    between known-good products, in one feed: the cases a random draw may take long to hit."""
    fmt: Format = "dummyjson" if mode == "dummyjson" else "ndjson"
    hard = [spec for spec in hard_values(target) if fmt == "ndjson" or not isinstance(spec, Garbage)]
    feed = FeedSpec(
        fmt=fmt,
        specs=tuple(spec for hard_one in hard for spec in (hard_one, Base())),
        batch_size=3,
        page_size=4,
        total_header=mode != "ndjson-in-workers",  # no total: mapped in the worker processes
    )
    check_feed(feed, mapping_pool, Tally())


# --- the slow suite: more than 100,000 items --------------------------------------------------------

SLOW_ITEMS = 100_000


def every_kind(fmt: Format) -> st.SearchStrategy[Spec]:
    return st.one_of(specs(fmt, max_fields=6), one_field_each(fmt), not_products(fmt), same_ids(fmt))


@pytest.mark.slow
def test_fuzz_at_scale(mapping_pool: MappingPool, capsys: pytest.CaptureFixture[str]) -> None:
    """Many fuzzed feeds of up to 120 items, then large feeds (the fuzzed items of one feed repeated to
    more than 20,000, mapped in the worker processes, with the fingerprint skip on the re-run) in
    both formats, until more than 100,000 items went through each run."""
    tally = Tally()

    @fuzz(1000)
    @given(feed=feeds(max_items=120, spec=every_kind, small_batches=True))
    def many(feed: FeedSpec) -> None:
        check_feed(feed, mapping_pool, tally)

    @fuzz(4)
    @given(
        feed=feeds(max_items=60, spec=every_kind),
        fmt=st.sampled_from(["dummyjson", "ndjson"]),
    )
    def large(feed: FeedSpec, fmt: Format) -> None:
        spec = FeedSpec(
            fmt=fmt,
            specs=tuple(s for s in feed.specs if fmt == "ndjson" or not isinstance(s, Garbage)) or (Base(),),
            batch_size=feed.batch_size if feed.batch_size > 1 else 500,
            page_size=max(feed.page_size, 100),
            style=feed.style,
            total_header=feed.total_header,
        )
        check_feed(amplify(spec, 25_000 // len(spec.specs) + 1), mapping_pool, tally)

    many()
    large()
    report(capsys, "slow", tally)
    assert tally.items >= SLOW_ITEMS, tally.line()
    assert tally.failed_runs == 0
