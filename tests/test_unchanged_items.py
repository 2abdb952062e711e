"""Items received exactly as last time are not validated or mapped again (the source fingerprint).

The feeds here announce no total, so their chunks go to the real mapping worker processes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from service.catalog.mapping import ProductRow, map_item
from service.catalog.sqlite_fingerprints import SqliteFingerprints
from service.catalog.tables_sink import CatalogTablesSink, _all_stored_as_read
from service.demo_upstream.products import demo_product
from service.domain.outcomes import BatchCounts, ItemError
from service.transport.offload import ChunkMapper, MappingPool
from service.transport.packing import NOT_MAPPED, LazyRow, PackedChunk, map_items_packed
from service.upstream.feed import FeedChunk
from tests.engine_fixtures import Harness, harness

COUNT = 300


class Feed:
    """NDJSON lines served without a total (so a run maps them in the worker processes)."""

    def __init__(self, count: int = COUNT) -> None:
        self.lines = [orjson.dumps(demo_product(index)) for index in range(count)]

    def app(self) -> web.Application:
        async def serve(request: web.Request) -> web.Response:
            body = b"".join(line + b"\n" for line in self.lines)
            return web.Response(body=body, content_type="application/x-ndjson")

        app = web.Application()
        app.router.add_get("/products.ndjson", serve)
        return app

    def change(self, index: int, edit: Callable[[dict[str, Any]], None]) -> None:
        item = orjson.loads(self.lines[index])
        edit(item)
        self.lines[index] = orjson.dumps(item)


@asynccontextmanager
async def synced(tmp_path: Path, server_for: AiohttpServer, feed: Feed) -> AsyncIterator[tuple[Harness, str]]:
    """A harness whose catalog already holds the feed (one successful run)."""
    server = await server_for(feed.app())
    url = str(server.make_url("/products.ndjson"))
    async with harness(tmp_path, source_format="ndjson") as h:
        first = await h.sync(url)
        assert (first.status, first.created, first.total) == ("success", COUNT, None)
        yield h, url


def keys_of(packed: PackedChunk) -> list[tuple[int, str, int, int, int]]:
    """The keys of a chunk mapped with a lookup (without one, there are none: every row is mapped)."""
    assert packed.keys is not None
    return packed.keys


async def _fingerprints(h: Harness) -> dict[str, tuple[int | None, int]]:
    rows = await h.db.fetch_all("SELECT external_id, source_hash, updated_run FROM products")
    return {row[0]: (row[1], row[2]) for row in rows}


async def test_an_identical_resync_rewrites_nothing(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    feed = Feed()
    async with synced(tmp_path, aiohttp_server, feed) as (h, url):
        before = await h.products()
        again = await h.sync(url)
        assert (again.status, again.created, again.updated, again.unchanged) == ("success", 0, 0, COUNT)
        assert await h.products() == before
        await h.assert_ledger_matches_catalog(again.id)


async def test_a_changed_item_among_unchanged_ones_is_updated(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    feed = Feed()
    async with synced(tmp_path, aiohttp_server, feed) as (h, url):
        feed.change(41, lambda item: item.update(price=12.34, title="A Brand New Title"))
        again = await h.sync(url)
        assert (again.updated, again.unchanged) == (1, COUNT - 1)
        changed = (await h.products())["42"]
        assert (changed["price_minor"], changed["handle"], changed["updated_run"]) == (
            1234,
            "a-brand-new-title",
            again.id,
        )
        expected = map_item(feed.lines[41], 41, "USD")
        assert isinstance(expected, ProductRow)
        assert (changed["content_hash"], changed["source_hash"]) == (
            expected.content_hash,
            expected.source_hash,
        )


async def test_an_item_in_another_form_is_unchanged_and_gets_the_new_fingerprint(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    feed = Feed()
    async with synced(tmp_path, aiohttp_server, feed) as (h, url):
        before = await _fingerprints(h)
        # The same content with its keys in another order: other bytes, the same product.
        feed.lines[7] = orjson.dumps(dict(reversed(orjson.loads(feed.lines[7]).items())))
        again = await h.sync(url)
        assert (again.updated, again.unchanged) == (0, COUNT)
        after = await _fingerprints(h)
        assert after["8"][0] != before["8"][0]
        assert after["8"][1] == before["8"][1]  # updated_run still names the run that wrote it
        assert {k: v for k, v in after.items() if k != "8"} == {k: v for k, v in before.items() if k != "8"}
        # The next run finds the new form unchanged without mapping it.
        packed = map_items_packed(feed.lines, 0, "USD", None, lookup=SqliteFingerprints(h.settings.db_path))
        assert [key[4] for key in keys_of(packed)] == [NOT_MAPPED] * COUNT


async def test_products_synced_before_fingerprints_get_them_on_their_next_sync(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    feed = Feed()
    async with synced(tmp_path, aiohttp_server, feed) as (h, url):
        with sqlite3.connect(h.settings.db_path) as conn:
            conn.execute("UPDATE products SET source_hash = NULL")
        first_run = await h.scalar("SELECT min(updated_run) FROM products")
        again = await h.sync(url)
        assert (again.updated, again.unchanged) == (0, COUNT)
        assert await h.scalar("SELECT count(*) FROM products WHERE source_hash IS NULL") == 0
        assert await h.scalar("SELECT max(updated_run) FROM products") == first_run


async def test_the_worker_maps_only_items_not_received_exactly_as_last_time(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    feed = Feed()
    async with synced(tmp_path, aiohttp_server, feed) as (h, _):
        feed.change(3, lambda item: item.update(stock=999))
        feed.lines.append(orjson.dumps(demo_product(COUNT)))  # new
        feed.lines.append(b'{"id": "broken"')  # an item error is reported as before
        packed = map_items_packed(feed.lines, 0, "USD", None, lookup=SqliteFingerprints(h.settings.db_path))
        mapped_positions = [key[0] for key in keys_of(packed) if key[4] != NOT_MAPPED]
        assert mapped_positions == [3, COUNT]
        assert (len(packed.payloads), packed.skipped) == (1, COUNT - 1)
        assert [error.position for error in packed.errors] == [COUNT + 1]
        # Unchanged rows carry the stored hashes, so the sink finds them unchanged.
        stored = await h.db.fetch_all("SELECT external_id, content_hash, source_hash FROM products")
        by_id = {row[0]: (row[1], row[2]) for row in stored}
        for position, external_id, content, source, slot in keys_of(packed):
            if slot == NOT_MAPPED:
                assert by_id[external_id] == (content, source), position
        # Without a catalog (a fresh sync), every item is mapped, and unpacked as full rows.
        fresh = map_items_packed(feed.lines, 0, "USD", None)
        assert (fresh.keys, fresh.skipped) == (None, 0)
        chunk = await fresh.unpack(feed.lines, 0, "USD")
        assert [item.position for item in chunk.items] == list(range(COUNT + 2))
        assert [row.external_id for row in chunk.rows][3] == "4"
        assert chunk.rows[3].stock == 999
        assert [error.position for error in chunk.errors] == [COUNT + 1]


async def test_a_small_feed_mapped_in_the_service_skips_unchanged_items_too(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    feed = Feed()
    async with synced(tmp_path, aiohttp_server, feed) as (h, _):
        feed.change(3, lambda item: item.update(stock=999))
        pool = MappingPool()
        try:
            mapper = ChunkMapper("USD", pool, lookup=SqliteFingerprints(h.settings.db_path))
            mapped = await mapper.map(FeedChunk(list(feed.lines), 0, COUNT))  # a small total: on the loop
            assert not mapper.uses_process
        finally:
            pool.close()
        rows = [item for item in mapped.items if isinstance(item, LazyRow)]
        assert [row.position for row in rows] == list(range(COUNT))
        assert [row.position for row in rows if row.slot != NOT_MAPPED] == [3]
        assert rows[3].full().stock == 999
        # The skipped ones carry the stored hashes, and can still be mapped in full if the sink asks.
        assert rows[4].full() == map_item(feed.lines[4], 4, "USD")


async def test_an_item_whose_id_is_given_twice_is_looked_up_by_the_id_that_counts(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    """The lookup reads a leading ``{"id":N,`` without parsing the line; JSON's later duplicate key
    wins, so that id may be the wrong one: the item must still be mapped, as the product it names."""
    feed = Feed()
    async with synced(tmp_path, aiohttp_server, feed) as (h, url):
        before = await h.products()
        # Item 5 now says id 6 first and id 5 last: it is product 5, changed.
        item = orjson.loads(feed.lines[4])
        feed.lines[4] = b'{"id":6,' + orjson.dumps({**item, "price": 77.5})[1:]
        assert orjson.loads(feed.lines[4])["id"] == 5
        packed = map_items_packed(feed.lines, 0, "USD", None, lookup=SqliteFingerprints(h.settings.db_path))
        assert [key[:2] for key in keys_of(packed) if key[4] != NOT_MAPPED] == [(4, "5")]
        again = await h.sync(url)
        assert (again.updated, again.unchanged, again.errors) == (1, COUNT - 1, 0)
        after = await h.products()
        assert after["5"]["price_minor"] == 7750
        assert after["6"] == before["6"]


async def test_an_unreadable_catalog_only_means_every_item_is_mapped(tmp_path: Path) -> None:
    lines = [orjson.dumps(demo_product(index)) for index in range(20)]
    packed = map_items_packed(lines, 0, "USD", None, lookup=SqliteFingerprints(tmp_path / "missing.db"))
    assert [key[4] for key in keys_of(packed)] == list(range(20))
    assert not (tmp_path / "missing.db").exists()  # read-only: never created


# What someone else does to product 10 between the worker's read and the sink's batch, and the counts
# the batch must then give: (created, updated, restored, unchanged).
_CHANGED_AFTER_THE_READ = {
    "edited": ("UPDATE products SET content_hash = 1, title = 'edited' WHERE external_id = '10'", (0, 1, 0)),
    "archived": ("UPDATE products SET archived_at = updated_at WHERE external_id = '10'", (0, 1, 1)),
    "deleted": ("DELETE FROM products WHERE external_id = '10'", (1, 0, 0)),
    "fingerprint lost": ("UPDATE products SET source_hash = NULL WHERE external_id = '10'", (0, 0, 0)),
}


@pytest.mark.parametrize("change", list(_CHANGED_AFTER_THE_READ))
async def test_a_product_changed_after_the_worker_skipped_its_item_is_mapped_in_the_service(
    tmp_path: Path, aiohttp_server: AiohttpServer, change: str
) -> None:
    statement, (created, updated, restored) = _CHANGED_AFTER_THE_READ[change]
    feed = Feed()
    async with synced(tmp_path, aiohttp_server, feed) as (h, url):
        packed = map_items_packed(feed.lines, 0, "USD", None, lookup=SqliteFingerprints(h.settings.db_path))
        assert all(key[4] == NOT_MAPPED for key in keys_of(packed))
        with sqlite3.connect(h.settings.db_path) as conn:
            conn.execute(statement)
        chunk = await packed.unpack(feed.lines, 0, "USD")
        rows = [item for item in chunk.items if isinstance(item, LazyRow)]
        assert len(rows) == COUNT and not any(isinstance(item, ItemError) for item in chunk.items)
        run = await h.ledger.start_run("tester", url)
        counts = (await CatalogTablesSink(h.ledger, h.db).write(run.id, rows, [], COUNT, None)).counts
        assert (counts.created, counts.updated, counts.restored) == (created, updated, restored)
        assert counts.unchanged == COUNT - created - updated
        product = (await h.products())["10"]
        expected = map_item(feed.lines[9], 9, "USD")
        assert isinstance(expected, ProductRow)
        assert (product["title"], product["content_hash"]) == (expected.title, expected.content_hash)
        assert (product["source_hash"], product["archived_at"]) == (expected.source_hash, None)


# Ids as feeds send them, which the batch's count passes to SQLite as the keys of a JSON object.
_ODD_IDS = ['quote"d', "back\\slash", "007", "1e3", "Ünïcødé", "😀 emoji", "tab\there", "42.0"]


@pytest.mark.parametrize("ids", ["numbers", "odd strings"])
async def test_a_batch_found_unchanged_by_the_worker_and_still_so_writes_nothing(
    tmp_path: Path, aiohttp_server: AiohttpServer, ids: str
) -> None:
    feed = Feed()
    if ids == "odd strings":
        for index, line in enumerate(feed.lines):
            feed.lines[index] = orjson.dumps({**orjson.loads(line), "id": f"{_ODD_IDS[index % 8]} {index}"})
    async with synced(tmp_path, aiohttp_server, feed) as (h, url):
        before = await h.products()
        packed = map_items_packed(feed.lines, 0, "USD", None, lookup=SqliteFingerprints(h.settings.db_path))
        rows = [
            item for item in (await packed.unpack(feed.lines, 0, "USD")).items if isinstance(item, LazyRow)
        ]
        assert len(rows) == COUNT and all(row.unchanged_when_read for row in rows)
        run = await h.ledger.start_run("tester", url)
        async with h.ledger.batch(run.id) as batch:
            # The one count finds every product as the worker read it (else the batch is compared row by row).
            assert await _all_stored_as_read(batch, "sqlite", rows)
            batch.record(BatchCounts(), ())
        counts = (await CatalogTablesSink(h.ledger, h.db).write(run.id, rows, [], COUNT, None)).counts
        assert (counts.created, counts.updated, counts.unchanged, counts.processed) == (0, 0, COUNT, COUNT)
        assert await h.products() == before


async def test_the_catalog_is_offered_for_lookups_only_once_it_holds_products(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    async with harness(tmp_path / "empty") as h:
        assert await CatalogTablesSink(h.ledger, h.db).unchanged_lookup() is None
    async with synced(tmp_path, aiohttp_server, Feed()) as (h, _):
        assert await CatalogTablesSink(h.ledger, h.db).unchanged_lookup() == SqliteFingerprints(
            h.settings.db_path
        )


def test_the_lookup_id_is_read_from_a_plain_start_or_else_parsed() -> None:
    from service.transport.packing import _lookup_id

    cases = {
        b'{"id":42,"title":"x"}': "42",
        b'{"id":0,"title":"x"}': "0",
        b'{"id": 42, "title":"x"}': "42",  # not the plain shape: parsed
        b'{"id":"sku-1","title":"x"}': "sku-1",
        b'{"id":007,"title":"x"}': None,  # not JSON
        b'{"id":1234567890123456789,"title":"x"}': "1234567890123456789",  # 19 digits: parsed
        b'{"id":42}': "42",  # no comma after it: parsed
        b'{"title":"x","id":42}': "42",
    }
    assert {raw: _lookup_id(raw) for raw in cases} == cases


def _catalog_file(path: Path, fingerprints: dict[str, tuple[int, int]]) -> None:
    """A file with the columns the lookup reads, holding ``fingerprints`` (written in WAL mode)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS products"
        " (external_id TEXT PRIMARY KEY, content_hash INTEGER, source_hash INTEGER, archived_at TEXT)"
    )
    conn.executemany(
        "INSERT OR REPLACE INTO products VALUES (?, ?, ?, NULL)",
        [(external_id, content, source) for external_id, (content, source) in fingerprints.items()],
    )
    conn.close()


def test_a_kept_lookup_connection_sees_later_commits_and_a_new_file_at_its_path(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    _catalog_file(path, {"1": (10, 11)})
    lookup = SqliteFingerprints(path)
    assert {key: tuple(value) for key, value in lookup(["1", "2"]).items()} == {"1": (10, 11)}
    _catalog_file(path, {"1": (20, 21), "2": (30, 31)})  # committed by another connection
    assert {key: tuple(value) for key, value in lookup(["1", "2"]).items()} == {"1": (20, 21), "2": (30, 31)}
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    assert lookup(["1", "2"]) == {}  # no catalog to read: every item is mapped
    _catalog_file(path, {"2": (40, 41)})  # a new catalog where the old one was
    assert {key: tuple(value) for key, value in lookup(["1", "2"]).items()} == {"2": (40, 41)}
