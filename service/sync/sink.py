"""Where mapped products go. The SQLite catalog is the default sink; the interface is kept small so a
sink pushing to a shop's admin API can replace it.

The SQLite sink writes each batch in one transaction that also moves the run's counters, so the ledger
always states exactly what the catalog holds from that run, whatever crashes or cancels in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple, Protocol, TypeVar

import aiosqlite
import orjson

from service.ledger.runs import BatchCounts, ItemError, Ledger
from service.sync.mapping import MappedRow, ProductRow
from service.timeutil import to_iso, utc_now


class CatalogSink(Protocol):
    async def write(
        self,
        run_id: int,
        rows: Sequence[MappedRow],
        errors: Sequence[ItemError],
        processed: int,
        total: int | None,
    ) -> BatchCounts:
        """Store one batch and record its counts in the run's ledger row, atomically."""
        ...


_SELECT_EXISTING = """
SELECT external_id, id, content_hash, handle, (created_run = :run_id OR updated_run = :run_id)
FROM products
WHERE external_id IN (SELECT value FROM json_each(:external_ids))
"""
_SELECT_HANDLE_OWNERS = """
SELECT handle, external_id FROM products WHERE handle IN (SELECT value FROM json_each(?))
"""
_INSERT_CATEGORY = """
INSERT INTO categories (handle, name, created_run, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (handle) DO NOTHING
"""
_SELECT_CATEGORIES = "SELECT handle, id FROM categories WHERE handle IN (SELECT value FROM json_each(?))"
_INSERT_PRODUCT = """
INSERT INTO products (
    external_id, handle, title, description, category_id, price_minor, currency, brand, sku, stock,
    thumbnail, images, tags, metadata, content_hash, created_run, updated_run, created_at, updated_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_UPDATE_PRODUCT = """
UPDATE products SET
    handle = ?, title = ?, description = ?, category_id = ?, price_minor = ?, currency = ?, brand = ?,
    sku = ?, stock = ?, thumbnail = ?, images = ?, tags = ?, metadata = ?, content_hash = ?,
    updated_run = ?, updated_at = ?
WHERE id = ?
"""


# Rows handled between two yields to the event loop: a batch's Python work (unpickling, comparing,
# building parameters) is several ms, and status polls would otherwise wait for all of it at once.
_SLICE = 250

_T = TypeVar("_T")


async def _slices(items: Sequence[_T]) -> AsyncIterator[Sequence[_T]]:
    for start in range(0, len(items), _SLICE):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + _SLICE]


class _Existing(NamedTuple):
    """A product already in the catalog (a named tuple: one is built per row of every batch)."""

    id: int
    content_hash: int
    handle: str
    written_by_run: int  # 1 when this run already created or updated it


def _content_columns(row: ProductRow, handle: str, category_id: int) -> tuple[object, ...]:
    return (
        handle,
        row.title,
        row.description,
        category_id,
        row.price_minor,
        row.currency,
        row.brand,
        row.sku,
        row.stock,
        row.thumbnail,
        row.images,
        row.tags,
        row.metadata,
        row.content_hash,
    )


def _json_list(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


class SqliteCatalogSink:
    """Products and categories in the service's own SQLite database (tables from migrations)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        # Category handle -> id, filled only from committed transactions (categories are never deleted).
        self._category_ids: dict[str, int] = {}

    async def write(
        self,
        run_id: int,
        rows: Sequence[MappedRow],
        errors: Sequence[ItemError],
        processed: int,
        total: int | None,
    ) -> BatchCounts:
        item_errors = list(errors)
        now = to_iso(utc_now())
        async with self._ledger.db.transaction() as conn:
            rows = _drop_batch_duplicates(rows, item_errors)
            existing = await _read_existing(conn, run_id, rows)
            to_write: list[tuple[ProductRow, _Existing | None]] = []
            unchanged = 0
            async for part in _slices(rows):
                for row in part:
                    found = existing.get(row.external_id)
                    if found is not None and found.written_by_run:
                        item_errors.append(
                            ItemError(
                                row.position,
                                row.external_id,
                                "duplicate id: already synced earlier in this feed",
                            )
                        )
                    elif found is not None and found.content_hash == row.content_hash:
                        unchanged += 1
                    else:
                        to_write.append((row.full(), found))  # only now the full row is needed
            new_categories, category_ids = await self._ensure_categories(
                conn, run_id, now, [row for row, _ in to_write]
            )
            handles = await _assign_handles(conn, to_write)
            inserts = []
            updates = []
            async for targets in _slices(list(zip(to_write, handles, strict=True))):
                for (product, before), handle in targets:
                    # Columns handle .. content_hash, in the order both statements list them.
                    content = _content_columns(product, handle, category_ids[product.category_handle])
                    if before is None:
                        inserts.append((product.external_id, *content, run_id, run_id, now, now))
                    else:
                        updates.append((*content, run_id, now, before.id))
            if inserts:
                await conn.executemany(_INSERT_PRODUCT, inserts)
            if updates:
                await conn.executemany(_UPDATE_PRODUCT, updates)
            counts = BatchCounts(
                created=len(inserts),
                updated=len(updates),
                unchanged=unchanged,
                errors=len(item_errors),
                categories_created=len(new_categories),
                processed=processed,
                total=total,
            )
            await self._ledger.record_batch(
                conn, run_id, counts, sorted(item_errors, key=lambda e: e.position)
            )
        self._category_ids.update(category_ids)
        return counts

    async def _ensure_categories(
        self, conn: aiosqlite.Connection, run_id: int, now: str, rows: Sequence[ProductRow]
    ) -> tuple[list[str], dict[str, int]]:
        """Create the batch's missing categories; return (handles created, handle -> id for the batch)."""
        names: dict[str, str] = {}
        for row in rows:
            names.setdefault(row.category_handle, row.category_name)
        ids = {handle: self._category_ids[handle] for handle in names if handle in self._category_ids}
        unknown = [handle for handle in names if handle not in ids]
        if not unknown:
            return [], ids
        before = await _categories_by_handle(conn, unknown)
        missing = [handle for handle in unknown if handle not in before]
        if missing:
            await conn.executemany(_INSERT_CATEGORY, [(h, names[h], run_id, now) for h in missing])
        ids.update(await _categories_by_handle(conn, unknown))
        return missing, ids


async def _categories_by_handle(conn: aiosqlite.Connection, handles: Sequence[str]) -> dict[str, int]:
    async with conn.execute(_SELECT_CATEGORIES, (_json_list(handles),)) as cursor:
        return {str(handle): int(category_id) for handle, category_id in await cursor.fetchall()}


def _drop_batch_duplicates(rows: Sequence[MappedRow], item_errors: list[ItemError]) -> list[MappedRow]:
    """A second item with an id already seen in this batch is an item error, not a second write."""
    seen: dict[str, int] = {}
    kept: list[MappedRow] = []
    for row in rows:
        first = seen.setdefault(row.external_id, row.position)
        if first != row.position:
            item_errors.append(
                ItemError(row.position, row.external_id, f"duplicate id: already at position {first}")
            )
        else:
            kept.append(row)
    return kept


async def _read_existing(
    conn: aiosqlite.Connection, run_id: int, rows: Sequence[MappedRow]
) -> dict[str, _Existing]:
    if not rows:
        return {}
    params = {"run_id": run_id, "external_ids": _json_list([row.external_id for row in rows])}
    async with conn.execute(_SELECT_EXISTING, params) as cursor:
        return {external_id: _Existing(*rest) for external_id, *rest in await cursor.fetchall()}


async def _assign_handles(
    conn: aiosqlite.Connection, to_write: Sequence[tuple[ProductRow, _Existing | None]]
) -> list[str]:
    """Unique handles: the title's slug, else ``slug-<external id>``, else that with ``-2``, ``-3``...

    A handle held by any *other* product in the database counts as taken, even if that product is
    renamed in this same batch: every statement then keeps the UNIQUE constraint, in any order.
    """
    candidates = [(row.handle_base, row.handle_with_id) for row, _ in to_write]
    owners = await _handle_owners(conn, [handle for pair in candidates for handle in pair])
    assigned: dict[str, str] = {}  # handle -> external id, within this batch
    handles: list[str] = []
    for (row, found), (base, with_id) in zip(to_write, candidates, strict=True):
        if found is not None and found.handle in (base, with_id):
            handle = found.handle  # same title as before: keep the handle it has
        else:
            handle = ""
            for candidate in (base, with_id):
                if owners.get(candidate, row.external_id) == row.external_id and candidate not in assigned:
                    handle = candidate
                    break
            suffix = 2
            while not handle:
                candidate = f"{with_id}-{suffix}"
                more = await _handle_owners(conn, [candidate])
                if more.get(candidate, row.external_id) == row.external_id and candidate not in assigned:
                    handle = candidate
                suffix += 1
        assigned[handle] = row.external_id
        handles.append(handle)
    return handles


async def _handle_owners(conn: aiosqlite.Connection, handles: Sequence[str]) -> dict[str, str]:
    if not handles:
        return {}
    async with conn.execute(_SELECT_HANDLE_OWNERS, (_json_list(handles),)) as cursor:
        return {str(handle): str(external_id) for handle, external_id in await cursor.fetchall()}
