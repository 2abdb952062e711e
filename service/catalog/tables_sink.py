"""The default sink: products and categories in the service's own database (SQLite or PostgreSQL).

Each batch is written inside the ledger's batch transaction, which also moves the run's counters, so
the ledger always states exactly what the catalog holds from that run.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import NamedTuple, TypeVar

from service.catalog import sql
from service.catalog.fingerprints import fingerprint_lookup
from service.catalog.mapping import STATEMENT_VALUES, MappedRow, ProductRow
from service.catalog.sink import BatchWritten, FingerprintLookup, RemovalMode, SinkInfo
from service.database.access import Database, Dialect
from service.database.list_params import json_array, json_object
from service.domain.outcomes import BatchCounts, ItemError, ProductChange
from service.ledger.batch import RunBatch
from service.ledger.runs import Ledger
from service.support.timeutil import to_iso, utc_now
from service.transport.pacing import give_way

# Rows handled between two yields to the event loop: a batch's Python work (loading rows, comparing,
# building parameters) is several ms, and status polls would otherwise wait for all of it at once.
# 100 rows take well under a millisecond even while polls keep both cores busy.
_SLICE = 100
_COPY_SLICE = 250

_T = TypeVar("_T")
_UNCHANGED_WHEN_READ = operator.attrgetter("unchanged_when_read")  # C-level, for every row of a batch


async def _slices(items: Sequence[_T]) -> AsyncIterator[Sequence[_T]]:
    for start in range(0, len(items), _SLICE):
        if start:
            await give_way()
        yield items[start : start + _SLICE]


class _Existing(NamedTuple):
    """A product already in the catalog (a named tuple: one is built per row of every batch)."""

    content_hash: int
    source_hash: int | None
    archived: bool


class KnownCategories:
    """Category handle -> name of the categories known to exist, so a batch need not read them all.

    Read from the catalog by the first batch; after that, extended only with the categories of batches
    that committed (:meth:`committed` is called after the transaction), so a batch rolled back (a cancel,
    a run finished elsewhere) leaves nothing here that the catalog does not hold. Categories are never
    deleted, so what is known stays true.
    """

    def __init__(self) -> None:
        self._by_handle: dict[str, str] | None = None

    async def read(self, batch: RunBatch) -> Mapping[str, str]:
        if self._by_handle is None:
            self._by_handle = {handle: name for handle, name in await batch.fetch_all(sql.SELECT_CATEGORIES)}
        return self._by_handle

    def committed(self, created: Mapping[str, str]) -> None:
        if self._by_handle is not None:
            self._by_handle.update(created)


class CatalogTablesSink:
    """Products and categories in the service's own database (tables from migrations).

    Reads the catalog through ``database`` and writes each batch inside the ledger's batch transaction.
    """

    def __init__(self, ledger: Ledger, database: Database) -> None:
        self._ledger = ledger
        self._database = database
        self._dialect = database.dialect
        self._categories = KnownCategories()

    def describe(self) -> SinkInfo:
        return SinkInfo(self._dialect, self._database.target)

    async def catalog_ids(self, after: str | None, limit: int) -> Sequence[str]:
        rows = await self._database.fetch_all(sql.OFFERED_IDS, {"after": after, "limit": limit})
        return [external_id for (external_id,) in rows]

    async def remove(
        self, run_id: int, external_ids: Sequence[str], mode: RemovalMode, *, dry_run: bool = False
    ) -> BatchCounts:
        ids = json_array(external_ids)
        async with self._ledger.batch(run_id) as batch:
            if dry_run:
                gone = await batch.fetch_all(sql.OFFERED_OF[self._dialect], {"ids": ids})
            elif mode == "archive":
                params = {"ids": ids, "run_id": run_id, "now": to_iso(utc_now())}
                gone = await batch.fetch_all(sql.ARCHIVE_PRODUCTS[self._dialect], params)
            else:
                gone = await batch.fetch_all(sql.DELETE_PRODUCTS[self._dialect], {"ids": ids})
            changes = [ProductChange(external_id, handle, "remove", mode) for external_id, handle in gone]
            counts = BatchCounts(removed=len(changes))
            batch.record(counts, (), changes)
        return counts

    async def _insert(
        self, batch: RunBatch, inserts: Sequence[tuple[object, ...]], run_id: int, now: str
    ) -> None:
        # On PostgreSQL a statement per row costs a round of the server's executor each: most of a
        # batch goes in by COPY instead.
        left = (
            await _copy_new(batch, self._dialect, inserts, run_id, now)
            if self._dialect == "postgres"
            else inserts
        )
        if left:
            await batch.execute_many(sql.INSERT_PRODUCT, left)

    async def unchanged_lookup(self) -> FingerprintLookup | None:
        row = await self._database.fetch_one(sql.ANY_PRODUCT)
        if row is None or not row[0]:
            return None
        return fingerprint_lookup(self._database, sql.SELECT_FINGERPRINTS)

    async def write(
        self,
        run_id: int,
        rows: Sequence[MappedRow],
        errors: Sequence[ItemError],
        processed: int,
        total: int | None,
        *,
        dry_run: bool = False,
    ) -> BatchWritten:
        item_errors = list(errors)
        refused: list[ItemError] = []
        now = to_iso(utc_now())
        run_values = (run_id, now)  # ?18 and ?19 of the product statements
        async with self._ledger.batch(run_id) as batch:
            known = await self._categories.read(batch)
            if await _all_stored_as_read(batch, self._dialect, rows):
                # An identical re-sync's batch: no product to read, compare or write.
                to_compare: Sequence[MappedRow] = ()
                existing: dict[str, _Existing] = {}
                unchanged = len(rows)
            else:
                to_compare = rows
                existing = await _read_existing(batch, self._dialect, rows)
                unchanged = 0
            inserts: list[tuple[object, ...]] = []
            updates: list[tuple[object, ...]] = []
            new_fingerprints: list[tuple[int, str]] = []
            new_categories: dict[str, str] = {}  # handle -> name
            restored: list[ProductChange] = []
            planned: list[tuple[ProductRow, bool]] = []  # a dry run's creates and updates (True)
            # Row by row only in slices: this runs on the event loop, between status polls.
            async for part in _slices(to_compare):
                for row in part:
                    found = existing.get(row.external_id)
                    if found is not None and found.content_hash == row.content_hash and not found.archived:
                        unchanged += 1
                        if found.source_hash != row.source_hash:
                            new_fingerprints.append((row.source_hash, row.external_id))
                        continue
                    product = row.full()  # only now the full row is needed
                    handle, name = product.category_handle, product.category_name
                    holder = known.get(handle) or new_categories.setdefault(handle, name)
                    if holder != name:
                        # Two names that make one handle ("T-Shirts", "t shirts"): refused, not merged.
                        refused.append(
                            ItemError(
                                row.position,
                                row.external_id,
                                f"category {name!r} makes the handle {handle!r} of the category {holder!r};"
                                " rename one of them upstream",
                            )
                        )
                        continue
                    values = product[:STATEMENT_VALUES] + run_values
                    (inserts if found is None else updates).append(values)
                    if dry_run:
                        planned.append((product, found is not None))
                    if found is not None and found.archived:
                        restored.append(ProductChange(row.external_id, product.handle_base, "restore"))
            item_errors.extend(refused)
            if dry_run:
                # Nothing is written: the counts, and each change with the fields it would make.
                categories_created = len(new_categories)
                restoring = {c.external_id for c in restored}
                changes = await _planned_changes(batch, self._dialect, planned, restoring)
            else:
                changes = restored
                categories_created = await _create_categories(batch, run_id, now, new_categories)
                if inserts:
                    await self._insert(batch, inserts, run_id, now)
                if updates:
                    await batch.execute_many(sql.UPDATE_PRODUCT, updates)
                if new_fingerprints:
                    await batch.execute_many(sql.UPDATE_SOURCE_HASH, new_fingerprints)
            counts = BatchCounts(
                created=len(inserts),
                updated=len(updates),
                unchanged=unchanged,
                errors=len(item_errors),
                categories_created=categories_created,
                processed=processed,
                total=total,
                restored=len(restored),
            )
            batch.record(counts, sorted(item_errors, key=lambda e: e.position), changes)
        if not dry_run:
            self._categories.committed(new_categories)
        return BatchWritten(counts, refused)


async def _copy_new(
    batch: RunBatch, dialect: Dialect, inserts: Sequence[tuple[object, ...]], run_id: int, now: str
) -> list[tuple[object, ...]]:
    """COPY the new products whose title's slug is free into the catalog; return the others, in feed
    order, for the per-row statement, which picks their handles."""
    slugs = json_array(sorted({str(values[1]) for values in inserts}))
    taken = {handle for (handle,) in await batch.fetch_all(sql.TAKEN_HANDLES[dialect], (slugs,))}
    categories = json_array(sorted({str(values[5]) for values in inserts}))
    category_ids = {
        handle: id_ for handle, id_ in await batch.fetch_all(sql.CATEGORY_IDS[dialect], (categories,))
    }
    copied: list[tuple[object, ...]] = []
    left: list[tuple[object, ...]] = []
    for values in inserts:
        slug = values[1]
        if slug in taken:
            left.append(values)
            continue
        taken.add(str(slug))  # a later product of the batch with this slug gets another handle
        # The catalog's columns: the statement values without the handle with the id, the category by id.
        category_id = category_ids[values[5]]
        copied.append(
            (
                values[0],
                slug,
                *values[3:5],
                category_id,
                *values[6:STATEMENT_VALUES],
                run_id,
                run_id,
                now,
                now,
            )
        )
    # In a few slices, yielding between them: encoding a COPY's rows runs on the event loop, but each
    # COPY costs the server a statement's start too.
    for start in range(0, len(copied), _COPY_SLICE):
        if start:
            await give_way()
        await batch.copy_rows("products", sql.COPIED_PRODUCT_COLUMNS, copied[start : start + _COPY_SLICE])
    return left


async def _create_categories(batch: RunBatch, run_id: int, now: str, categories: Mapping[str, str]) -> int:
    """Create the categories that do not exist yet; return how many were created."""
    # One statement each, for its count (a category already there is not created): a batch brings few.
    created = 0
    for handle, name in categories.items():
        created += await batch.execute(sql.INSERT_CATEGORY, (handle, name, run_id, now))
    return created


# A dry run's changes name the fields an update would change (the catalog's columns, as the API says them).
_COMPARED_FIELDS = (
    ("title", "title"),
    ("description", "description"),
    ("category", "category_handle"),
    ("price", "price_minor"),
    ("currency", "currency"),
    ("brand", "brand"),
    ("sku", "sku"),
    ("stock", "stock"),
    ("thumbnail", "thumbnail"),
    ("images", "images"),
    ("tags", "tags"),
    ("metadata", "metadata"),
)


async def _planned_changes(
    batch: RunBatch, dialect: Dialect, planned: Sequence[tuple[ProductRow, bool]], restoring: set[str]
) -> list[ProductChange]:
    updated = [product.external_id for product, exists in planned if exists]
    stored = {}
    if updated:
        found = await batch.fetch_all(sql.SELECT_STORED[dialect], (json_array(updated),))
        stored = {row["external_id"]: row for row in found}
    changes: list[ProductChange] = []
    for product, exists in planned:
        if not exists:
            changes.append(ProductChange(product.external_id, product.handle_base, "create"))
            continue
        row = stored[product.external_id]
        fields = [name for name, column in _COMPARED_FIELDS if row[column] != getattr(product, column)]
        kind = "restore" if product.external_id in restoring else "update"
        changes.append(ProductChange(product.external_id, row["handle"], kind, fields=json_array(fields)))
    return changes


async def _all_stored_as_read(batch: RunBatch, dialect: Dialect, rows: Sequence[MappedRow]) -> bool:
    """Whether the mapping found every product of the batch unchanged, and the catalog still holds each
    so: then one count replaces reading and comparing each of them."""
    if not rows or not all(map(_UNCHANGED_WHEN_READ, rows)):
        return False
    fingerprints = json_object((row.external_id, f"{row.content_hash} {row.source_hash}") for row in rows)
    [(count,)] = await batch.fetch_all(sql.COUNT_STORED_AS_READ[dialect], (fingerprints,))
    # An external id is one catalog row at most: the count is the batch's length only if each matched
    # (an id twice in the batch would be one key of the object, and the count short of the length).
    return bool(count == len(rows))


async def _read_existing(
    batch: RunBatch, dialect: Dialect, rows: Sequence[MappedRow]
) -> dict[str, _Existing]:
    if not rows:
        return {}
    ids = json_array([row.external_id for row in rows])
    found = await batch.fetch_all(sql.SELECT_EXISTING[dialect], (ids,))
    new = tuple.__new__  # not _Existing(...): its Python-level constructor is the slower, per row
    return {row[0]: new(_Existing, (row[1], row[2], row[3])) for row in found}
