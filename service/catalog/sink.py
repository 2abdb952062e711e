"""The sink seam: what the engine hands mapped batches to, and what the mapping workers may ask of it.

The engine knows only :class:`CatalogSink`. A sink stores each batch and records its counts in the run's
ledger row atomically; it may also give the workers a :class:`FingerprintLookup`, so that items received
exactly as last time are not mapped again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from service.catalog.mapping import MappedRow
from service.domain.outcomes import BatchCounts, ItemError


class StoredFingerprints(NamedTuple):
    """What the store holds of a product's last sync: the hash of its row, and of its item as received."""

    content_hash: int
    source_hash: int | None


class FingerprintLookup(Protocol):
    """The stored fingerprints of products by upstream id, read in a mapping worker process.

    It is pickled to the workers, so it holds only what they need to reach the store (a path, a URL), and
    imports nothing heavy. A store it cannot read answers nothing: every item is then mapped, only slower.
    """

    def __call__(self, external_ids: Sequence[str]) -> Mapping[str, StoredFingerprints]: ...


@dataclass(frozen=True, slots=True)
class BatchWritten:
    """What a sink did with one batch: its counts, and the rows it refused itself (after mapping)."""

    counts: BatchCounts
    refused: Sequence[ItemError] = ()


@dataclass(frozen=True, slots=True)
class SinkInfo:
    """Where products go, as status and /ready show it (never with a secret)."""

    kind: Literal["sqlite", "postgres", "medusa"]
    target: str  # the database file or server (never with a password), or the shop's URL


RemovalMode = Literal["archive", "delete"]


class CatalogSink(Protocol):
    def describe(self) -> SinkInfo: ...

    async def catalog_ids(self, after: str | None, limit: int) -> Sequence[str]:
        """Up to ``limit`` upstream ids of the products this sink holds and offers (not archived), in
        order, after ``after``: what a run compares with the feed to find the products gone upstream.
        A shop sink answers only the products it published, never one made in the shop by hand."""
        ...

    async def remove(
        self, run_id: int, external_ids: Sequence[str], mode: RemovalMode, *, dry_run: bool = False
    ) -> BatchCounts:
        """Archive or delete these products, recording the removals in the run's row atomically.
        ``dry_run``: record what would be removed, and remove nothing."""
        ...

    async def unchanged_lookup(self) -> FingerprintLookup | None:
        """How the workers find the items unchanged since the last sync; None when nothing can be
        (an empty catalog: then a fresh sync does not pay for the lookups)."""
        ...

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
        """Store one batch and record its counts (and ``errors``) in the run's ledger row, atomically.
        ``dry_run``: store nothing; record the counts, and each change the batch would make."""
        ...
