"""The Medusa v2 sink: each batch published through ``POST /admin/products/batch``, then recorded.

- **Nothing unchanged is sent.** Per upstream product the service keeps the Medusa ids and the hash of
  what it last published (``medusa_products``); an identical re-sync sends no write request.
- **One product per upstream id, whatever crashed.** A product the links do not know is looked up by
  ``external_id`` before it is created (so a batch whose answer was lost is found, not created twice),
  then adopted by handle when it carries the upstream id in ``metadata.external_id`` (how the replaced
  job stored it). A write that fails in a transient way is resent only after that lookup again.
- **Exact counts.** A batch's counts are what Medusa confirmed, recorded with the links in one ledger
  transaction. A batch Medusa refuses (400 names one bad product and creates nothing) is split until the
  bad products are alone; each is an item error with Medusa's message, and the rest is published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeVar

import orjson

from service.catalog.fingerprints import fingerprint_lookup
from service.catalog.mapping import MappedRow, ProductRow
from service.catalog.medusa import sql
from service.catalog.medusa.client import MedusaClient, MedusaNotFound, MedusaRejected
from service.catalog.medusa.payloads import (
    MedusaIds,
    Placement,
    changed_fields,
    create_payload,
    update_payload,
)
from service.catalog.medusa.shop import Shop
from service.catalog.sink import BatchWritten, FingerprintLookup, RemovalMode, SinkInfo
from service.database.access import Database
from service.domain.errors import SyncFailed
from service.domain.outcomes import BatchCounts, ItemError, ProductChange
from service.ledger.runs import Ledger
from service.support.timeutil import to_iso, utc_now
from service.upstream import exact_json
from service.upstream.retry import RETRYABLE_EXCEPTIONS, RetryPolicy

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BATCH_PATH = "/admin/products/batch"
# What a lookup asks for: enough to update a product in place (and to adopt one).
_LOOKUP_FIELDS = "id,external_id,handle,metadata,variants.id,variants.prices.id,variants.prices.currency_code"
# A batch is split over the requests in flight only into requests of at least this many products:
# each request costs Medusa a fixed part of a second whatever it holds, so splitting a small batch
# gains nothing (figures in docs/benchmarks.md, issue 16).
_SPLIT_AT_LEAST = 200
# Ids per lookup request: a URL with a few hundred ids stays far below any server's header limit.
_LOOKUP_CHUNK = 100
# What a dry run reads of the products it would update, to say which fields would change.
_PLAN_FIELDS = (
    "id,title,handle,description,status,thumbnail,images.url,categories.id,metadata,variants.sku,"
    "variants.prices.amount,variants.prices.currency_code"
)
# Products per archive or delete request: a few dozen bytes each, far below the body limit.
_REMOVE_CHUNK = 1000


class _Link(NamedTuple):
    product_id: str
    variant_id: str
    price_id: str
    handle: str
    content_hash: int
    source_hash: int | None
    archived: bool  # a draft now, since the feed stopped listing it
    # A removal was sent and its answer never recorded (a crash, a failed run): the shop may hold it as
    # a draft or not at all, so the product is sent again, whatever its hash, if it comes back.
    unsure: bool

    @property
    def needs_sending(self) -> bool:
        return self.archived or self.unsure


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One product to send: a create (``ids`` None) or an update in place, with its request body part
    (serialised once: it sizes the requests and is what they carry)."""

    row: ProductRow
    handle: str
    category_id: str
    ids: MedusaIds | None
    payload: bytes

    @property
    def is_create(self) -> bool:
        return self.ids is None


@dataclass(frozen=True, slots=True)
class _Confirmed:
    outgoing: _Outgoing
    ids: MedusaIds
    handle: str


def _ids_of(product: Mapping[str, Any], currency_code: str) -> MedusaIds | None:
    """The product's, its first variant's and that variant's price's ids (in our currency)."""
    variants = product.get("variants") or []
    if not variants:
        return None
    variant = variants[0]
    prices = [price for price in variant.get("prices") or [] if price.get("currency_code") == currency_code]
    price_id = prices[0]["id"] if prices else ""
    return MedusaIds(str(product["id"]), str(variant["id"]), str(price_id))


class MedusaSink:
    def __init__(
        self,
        ledger: Ledger,
        database: Database,
        client: MedusaClient,
        shop: Shop,
        *,
        status: str,
        batch_bytes: int,
        concurrency: int,
        policy: RetryPolicy,
    ) -> None:
        self._ledger = ledger
        self._database = database
        self._dialect = database.dialect
        self._client = client
        self._shop = shop
        self._status = status
        self._batch_bytes = batch_bytes
        self._concurrency = concurrency
        self._policy = policy
        self._target = client.target

    def describe(self) -> SinkInfo:
        return SinkInfo("medusa", self._target)

    async def unchanged_lookup(self) -> FingerprintLookup | None:
        row = await self._database.fetch_one(sql.ANY_LINK, (self._target,))
        if row is None or not row[0]:
            return None
        return fingerprint_lookup(self._database, sql.FINGERPRINTS, (self._target,))

    # --- one batch --------------------------------------------------------------------------------

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
        links = await self._links([row.external_id for row in rows])
        unchanged = 0
        new_fingerprints: list[tuple[str, str, int]] = []
        to_send: list[ProductRow] = []
        for row in rows:
            link = links.get(row.external_id)
            if link is not None and link.content_hash == row.content_hash and not link.needs_sending:
                unchanged += 1
                if link.source_hash != row.source_hash:
                    new_fingerprints.append((self._target, row.external_id, row.source_hash))
                continue
            to_send.append(row.full())

        categories, categories_created, new_categories = await self._categories(to_send, create=not dry_run)
        outgoing = await self._plan(to_send, links, categories)
        if dry_run:
            plan = BatchCounts(
                unchanged=unchanged,
                errors=len(errors),
                categories_created=categories_created,
                processed=processed,
                total=total,
            )
            return await self._record_plan(run_id, outgoing, links, plan, errors)
        confirmed, refused = await self._push(outgoing)

        created = sum(1 for done in confirmed if done.outgoing.is_create)
        restored = [
            ProductChange(done.outgoing.row.external_id, done.handle, "restore")
            for done in confirmed
            if (link := links.get(done.outgoing.row.external_id)) is not None and link.archived
        ]
        counts = BatchCounts(
            restored=len(restored),
            created=created,
            updated=len(confirmed) - created,
            unchanged=unchanged,
            errors=len(errors) + len(refused),
            categories_created=categories_created,
            processed=processed,
            total=total,
        )
        now = to_iso(utc_now())
        async with self._ledger.batch(run_id) as batch:
            if new_categories:
                await batch.execute_many(
                    sql.UPSERT_CATEGORY,
                    [
                        (self._target, handle, category_id, name)
                        for handle, (category_id, name) in new_categories.items()
                    ],
                )
            if confirmed:
                await batch.execute_many(
                    sql.DROP_OTHER_LINKS,
                    [
                        (self._target, done.ids.product_id, done.outgoing.row.external_id)
                        for done in confirmed
                    ],
                )
                await batch.execute_many(
                    sql.UPSERT_LINK,
                    [
                        (
                            self._target,
                            done.outgoing.row.external_id,
                            done.ids.product_id,
                            done.ids.variant_id,
                            done.ids.price_id,
                            done.handle,
                            done.outgoing.row.content_hash,
                            done.outgoing.row.source_hash,
                            run_id,
                            now,
                        )
                        for done in confirmed
                    ],
                )
            if new_fingerprints:
                await batch.execute_many(sql.UPDATE_SOURCE_HASH, new_fingerprints)
            batch.record(counts, sorted([*errors, *refused], key=lambda error: error.position), restored)
        return BatchWritten(counts, refused)

    # --- products gone upstream -------------------------------------------------------------------

    async def catalog_ids(self, after: str | None, limit: int) -> Sequence[str]:
        rows = await self._database.fetch_all(sql.OFFERED_IDS, (self._target, after, limit))
        return [external_id for (external_id,) in rows]

    async def remove(
        self, run_id: int, external_ids: Sequence[str], mode: RemovalMode, *, dry_run: bool = False
    ) -> BatchCounts:
        """Make these products drafts (archive) or delete them in the shop, then record it.

        Only products this service published (its links) are touched. The links are marked before the
        shop is asked, and both requests are idempotent: a transient fault resends them, and after a
        crash or failure before the record, the next run removes those products again or, if they came
        back, sends them again in full (restoring them whatever the shop did with the request).
        """
        links = await self._links(external_ids)
        gone = [(external_id, link) for external_id, link in links.items() if not link.archived]
        if not dry_run and gone:
            # Recorded before the shop is asked: a crash between the request and its record then leaves
            # the links saying "unsure", not "published and unchanged".
            async with self._ledger.batch(run_id) as marking:
                await marking.execute_many(
                    sql.REMOVING_LINK, [(self._target, external_id, run_id) for external_id, _ in gone]
                )
                marking.record(BatchCounts(), ())
        changes = [ProductChange(external_id, link.handle, "remove", mode) for external_id, link in gone]
        if dry_run:
            async with self._ledger.batch(run_id) as batch:
                counts = BatchCounts(removed=len(gone))
                batch.record(counts, (), changes)
            return counts
        product_ids = [link.product_id for _, link in gone]
        for ids in _chunks(product_ids, _REMOVE_CHUNK):
            await self._remove_in_shop(list(ids), mode)
        async with self._ledger.batch(run_id) as batch:
            if mode == "archive":
                await batch.execute_many(
                    sql.ARCHIVE_LINK, [(self._target, external_id, run_id) for external_id, _ in gone]
                )
            else:
                await batch.execute_many(
                    sql.DROP_LINK, [(self._target, external_id) for external_id, _ in gone]
                )
            counts = BatchCounts(removed=len(gone))
            batch.record(counts, (), changes)
        return counts

    async def _remove_in_shop(self, product_ids: list[str], mode: RemovalMode) -> None:
        """Make these products drafts, or delete them. Ones already gone from the shop (deleted by hand,
        or by a removal whose answer was lost) are left out rather than failing the run."""

        def body(ids: Sequence[str]) -> bytes:
            if mode == "archive":
                return orjson.dumps({"update": [{"id": one, "status": "draft"} for one in ids]})
            return orjson.dumps({"delete": list(ids)})

        try:
            await self._send_idempotent(body(product_ids))
        except MedusaRejected:
            present = [str(product["id"]) for product in await self._lookup("id", product_ids, "id")]
            if present:
                await self._send_idempotent(body(present))

    async def _send_idempotent(self, body: bytes) -> Any:
        """A batch request that may be sent again as it is (no creates), after transient faults."""
        attempt = 1
        while True:
            try:
                return await self._client.send_once(BATCH_PATH, body)
            except RETRYABLE_EXCEPTIONS as fault:
                if attempt >= self._policy.attempts:
                    raise SyncFailed(self._client.describe(fault, f"POST {BATCH_PATH}", attempt)) from fault
                await asyncio.sleep(self._policy.delay_before(attempt + 1, fault))
                attempt += 1

    async def _record_plan(
        self,
        run_id: int,
        outgoing: Sequence[_Outgoing],
        links: Mapping[str, _Link],
        plan: BatchCounts,
        errors: Sequence[ItemError],
    ) -> BatchWritten:
        """A dry run's batch: nothing sent; each create and update recorded, with the fields an update
        would change in the shop (compared with the product Medusa holds now)."""
        updates = [item for item in outgoing if item.ids is not None]
        current = {
            str(product["id"]): product
            for product in await self._lookup(
                "id", [item.ids.product_id for item in updates if item.ids is not None], _PLAN_FIELDS
            )
        }
        changes: list[ProductChange] = []
        restored = 0
        for item in outgoing:
            external_id = item.row.external_id
            if item.ids is None:
                changes.append(ProductChange(external_id, item.handle, "create"))
                continue
            link = links.get(external_id)
            archived = link is not None and link.archived
            restored += archived
            fields = changed_fields(orjson.loads(item.payload), current.get(item.ids.product_id))
            kind = "restore" if archived else "update"
            changes.append(ProductChange(external_id, item.handle, kind, fields=sql.json_array(fields)))
        counts = replace(plan, created=len(outgoing) - len(updates), updated=len(updates), restored=restored)
        async with self._ledger.batch(run_id) as batch:
            batch.record(counts, sorted(errors, key=lambda error: error.position), changes)
        return BatchWritten(counts)

    async def _links(self, external_ids: Sequence[str]) -> dict[str, _Link]:
        if not external_ids:
            return {}
        found = await self._database.fetch_all(
            sql.SELECT_LINKS[self._dialect], (self._target, sql.json_array(external_ids))
        )
        return {external_id: _Link(*rest) for external_id, *rest in found}

    # --- categories -------------------------------------------------------------------------------

    async def _categories(
        self, rows: Sequence[ProductRow], *, create: bool = True
    ) -> tuple[dict[str, str], int, dict[str, tuple[str, str]]]:
        """Category handle -> Medusa id for ``rows`` (created in Medusa when missing), how many were
        created, and the ones the links did not know yet. ``create=False`` (a dry run): the missing
        ones are only counted, and stand for an id of "" here."""
        if not rows:
            return {}, 0, {}  # a batch of unchanged products (most of a re-sync) asks nothing
        known = {
            handle: (category_id, name)
            for handle, category_id, name in await self._database.fetch_all(
                sql.SELECT_CATEGORIES, (self._target,)
            )
        }
        wanted: dict[str, str] = {}
        for row in rows:
            wanted.setdefault(row.category_handle, row.category_name)
        missing = [handle for handle in wanted if handle not in known]
        new: dict[str, tuple[str, str]] = {}
        created = 0
        if missing:
            for chunk in _chunks(missing, _LOOKUP_CHUNK):
                params = [("handle[]", handle) for handle in chunk] + [
                    ("fields", "id,handle,name"),
                    ("limit", str(len(chunk))),
                ]
                for category in (await self._client.read("/admin/product-categories", params))[
                    "product_categories"
                ]:
                    new[category["handle"]] = (category["id"], category["name"])
            for handle in missing:
                if handle in new:
                    continue
                if not create:
                    new[handle] = ("", wanted[handle])
                    created += 1
                    continue
                body = {"name": wanted[handle], "handle": handle, "is_active": True}
                try:
                    answer = await self._client.create("/admin/product-categories", body)
                except MedusaRejected:
                    # Created meanwhile (another process, or a retried request that had been applied).
                    again = await self._client.read(
                        "/admin/product-categories", [("handle[]", handle), ("fields", "id,handle,name")]
                    )
                    if not again["product_categories"]:
                        raise
                    category = again["product_categories"][0]
                else:
                    category = answer["product_category"]
                    created += 1
                new[handle] = (category["id"], category["name"])
        # The shop owns its categories: one with the handle is used whatever its name (staff may have
        # renamed it), and two upstream names that make one handle share it, as Medusa's handles would.
        ids = {
            handle: category_id for handle, (category_id, _) in {**known, **new}.items() if handle in wanted
        }
        return ids, created, new

    # --- what to send ---------------------------------------------------------------------------

    async def _plan(
        self, rows: Sequence[ProductRow], links: Mapping[str, _Link], categories: Mapping[str, str]
    ) -> list[_Outgoing]:
        """Updates for the products Medusa holds (known, found by external id, or adopted), creates for
        the rest, each create with a handle no other product holds."""
        outgoing: list[_Outgoing] = []
        unknown: list[ProductRow] = []
        for row in rows:
            link = links.get(row.external_id)
            if link is not None:
                ids = MedusaIds(link.product_id, link.variant_id, link.price_id)
                outgoing.append(self._outgoing(row, link.handle, categories[row.category_handle], ids))
            else:
                unknown.append(row)
        if not unknown:
            return outgoing
        found = await self._find_by_external_id([row.external_id for row in unknown])
        by_handle = await self._find_by_handle(
            [
                h
                for row in unknown
                if row.external_id not in found
                for h in (row.handle_base, row.handle_with_id)
            ]
        )
        linked_handles = await self._linked_handles(
            [handle for row in unknown for handle in (row.handle_base, row.handle_with_id)]
        )
        chosen: set[str] = set()
        adopted: set[str] = set()  # a product found by handle is one upstream product's, not two
        for row in unknown:
            category_id = categories[row.category_handle]
            product = found.get(row.external_id)
            if product is None:
                # The replaced job's products: by handle (its own "-<id>" form on a clash too).
                candidates = [by_handle.get(row.handle_base), by_handle.get(row.handle_with_id)]
                product = next(
                    (
                        c
                        for c in candidates
                        if c is not None and c["id"] not in adopted and _adoptable(c, row.external_id)
                    ),
                    None,
                )
                if product is not None:
                    adopted.add(str(product["id"]))
            held = _ids_of(product, self._shop.currency_code) if product is not None else None
            if product is not None and held is not None:
                outgoing.append(self._outgoing(row, str(product["handle"]), category_id, held))
                continue
            taken = (
                chosen
                | set(by_handle)
                | {h for h, owner in linked_handles.items() if owner != row.external_id}
            )
            handle = row.handle_base if row.handle_base not in taken else row.handle_with_id
            chosen.add(handle)
            outgoing.append(self._outgoing(row, handle, category_id, None))
        return outgoing

    async def _lookup(
        self, key: str, values: Sequence[str], fields: str = _LOOKUP_FIELDS
    ) -> list[Mapping[str, Any]]:
        async def one(chunk: Sequence[str]) -> list[Mapping[str, Any]]:
            params = [(f"{key}[]", value) for value in chunk] + [
                ("fields", fields),
                ("limit", str(len(chunk) * 2)),  # external_id is not unique in Medusa: see duplicates too
            ]
            found: list[Mapping[str, Any]] = (await self._client.read("/admin/products", params))["products"]
            return found

        chunks = _chunks(list(dict.fromkeys(values)), _LOOKUP_CHUNK)
        answers = await _side_by_side(self._concurrency, [one(chunk) for chunk in chunks])
        return [product for answer in answers for product in answer]

    async def _find_by_external_id(self, external_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        for product in await self._lookup("external_id", external_ids):
            # If a shop holds two (external_id is not unique there), the first listed is the one kept.
            found.setdefault(str(product["external_id"]), product)
        return found

    async def _find_by_handle(self, handles: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        if not handles:
            return {}
        return {str(product["handle"]): product for product in await self._lookup("handle", handles)}

    async def _linked_handles(self, handles: Sequence[str]) -> dict[str, str]:
        found = await self._database.fetch_all(
            sql.SELECT_LINKED_HANDLES[self._dialect], (self._target, sql.json_array(handles))
        )
        return {handle: external_id for handle, external_id in found}

    # --- sending --------------------------------------------------------------------------------

    def _outgoing(self, row: ProductRow, handle: str, category_id: str, ids: MedusaIds | None) -> _Outgoing:
        place = Placement(handle, category_id, self._shop.sales_channel_id, self._status)
        body = update_payload(row, place, ids) if ids else create_payload(row, place)
        return _Outgoing(row, handle, category_id, ids, exact_json.dumps(body))

    def _requests(self, items: Sequence[_Outgoing]) -> Iterable[list[_Outgoing]]:
        """The items in requests whose bodies stay under the byte limit, one request for each slot in
        flight (so a batch keeps them all busy), but none split below a few hundred products."""
        per_request = max(_SPLIT_AT_LEAST, -(-len(items) // self._concurrency))
        current: list[_Outgoing] = []
        size = 32
        for item in items:
            full = len(current) >= per_request or size + len(item.payload) + 1 > self._batch_bytes
            if current and full:
                yield current
                current, size = [], 32
            current.append(item)
            size += len(item.payload) + 1
        if current:
            yield current

    async def _push(self, items: Sequence[_Outgoing]) -> tuple[list[_Confirmed], list[ItemError]]:
        answers = await _side_by_side(
            self._concurrency, [self._send_isolating(request) for request in self._requests(items)]
        )
        confirmed = [done for done_here, _ in answers for done in done_here]
        rejected = [error for _, refused in answers for error in refused]
        return confirmed, rejected

    @staticmethod
    def _refusal(item: _Outgoing, exc: MedusaRejected) -> ItemError:
        return ItemError(item.row.position, item.row.external_id, f"Medusa refused it: {exc.message}")

    async def _send_isolating(
        self, items: list[_Outgoing], retried: bool = False
    ) -> tuple[list[_Confirmed], list[ItemError]]:
        """Send ``items`` as one request; if Medusa refuses it, send the halves, down to single items."""
        try:
            return await self._send(items), []
        except MedusaNotFound as exc:
            # An update of a product someone deleted in the shop: the link is stale, so it is resolved
            # again (by external id, else created); anything else not found is the item's own fault.
            if len(items) == 1:
                item = items[0]
                if item.is_create or retried:
                    return [], [self._refusal(item, exc)]
                as_new = self._outgoing(item.row, item.handle, item.category_id, None)
                return await self._send_isolating(await self._reresolve([as_new]), retried=True)
        except MedusaRejected as exc:
            if len(items) == 1:
                return [], [self._refusal(items[0], exc)]
        middle = len(items) // 2
        first, first_refused = await self._send_isolating(items[:middle])
        second, second_refused = await self._send_isolating(items[middle:])
        return first + second, first_refused + second_refused

    async def _send(self, items: list[_Outgoing]) -> list[_Confirmed]:
        """One batch request, resent after transient faults; before resending, the creates are looked up
        again by external id, since a request whose answer was lost may have been applied."""
        attempt = 1
        while True:
            body = _batch_body(
                [item.payload for item in items if item.is_create],
                [item.payload for item in items if not item.is_create],
            )
            try:
                answer = await self._client.send_once(BATCH_PATH, body)
                break
            except RETRYABLE_EXCEPTIONS as fault:
                if attempt >= self._policy.attempts:
                    raise SyncFailed(self._client.describe(fault, f"POST {BATCH_PATH}", attempt)) from fault
                delay = self._policy.delay_before(attempt + 1, fault)
                log.warning(
                    "Medusa fault (%s), attempt %d of %d; looking its new products up, resending in %.2f s",
                    self._client.describe(fault, f"POST {BATCH_PATH}", attempt),
                    attempt,
                    self._policy.attempts,
                    delay,
                )
                await asyncio.sleep(delay)
                attempt += 1
                items = await self._reresolve(items)
        return self._confirmations(items, answer)

    async def _reresolve(self, items: list[_Outgoing]) -> list[_Outgoing]:
        creates = [item for item in items if item.is_create]
        if not creates:
            return items
        found = await self._find_by_external_id([item.row.external_id for item in creates])
        resolved: list[_Outgoing] = []
        for item in items:
            product = found.get(item.row.external_id) if item.is_create else None
            ids = _ids_of(product, self._shop.currency_code) if product is not None else None
            if product is not None and ids is not None:
                resolved.append(self._outgoing(item.row, str(product["handle"]), item.category_id, ids))
            else:
                resolved.append(item)
        return resolved

    def _confirmations(self, items: Sequence[_Outgoing], answer: Mapping[str, Any]) -> list[_Confirmed]:
        by_id = {
            str(product.get("external_id")): product
            for product in [*(answer.get("created") or []), *(answer.get("updated") or [])]
        }
        confirmed: list[_Confirmed] = []
        for item in items:
            product = by_id.get(item.row.external_id)
            ids = _ids_of(product, self._shop.currency_code) if product is not None else None
            if product is None or ids is None:
                missing = item.row.external_id
                raise SyncFailed(
                    f"Medusa's answer to {BATCH_PATH} lacks the product with external id {missing}"
                )
            confirmed.append(_Confirmed(item, ids, str(product["handle"])))
        return confirmed


def _adoptable(product: Mapping[str, Any], external_id: str) -> bool:
    """Whether a product found by handle is this upstream product: it has no external id, and its
    metadata names this upstream id (the replaced job's way) or no upstream id at all."""
    if product.get("external_id"):
        return False
    metadata = product.get("metadata") or {}
    claimed = metadata.get("external_id")
    return claimed is None or str(claimed) == external_id


def _batch_body(creates: Sequence[bytes], updates: Sequence[bytes]) -> bytes:
    return b'{"create":[' + b",".join(creates) + b'],"update":[' + b",".join(updates) + b"]}"


async def _side_by_side(limit: int, calls: Iterable[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Await ``calls``, at most ``limit`` at a time, and return their results in order. The first to
    fail cancels the others (awaited here, none left running) and its exception is raised."""
    slots = asyncio.Semaphore(limit)

    async def one(call: Coroutine[Any, Any, _T]) -> _T:
        async with slots:
            return await call

    tasks = [asyncio.ensure_future(one(call)) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _chunks(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
