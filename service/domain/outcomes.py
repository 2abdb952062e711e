"""What mapping and writing a batch produce: the counts the ledger adds up, and the items skipped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """What one committed batch did; added to the run's counters in the same transaction."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: int = 0
    categories_created: int = 0
    processed: int = 0
    total: int | None = None
    removed: int = 0  # products the feed no longer lists, archived or deleted
    restored: int = 0  # archived products back in the feed (counted in updated too)

    def __add__(self, other: BatchCounts) -> BatchCounts:
        """Counts of two batches together (the later batch's total wins when it tells one)."""
        return BatchCounts(
            created=self.created + other.created,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
            errors=self.errors + other.errors,
            categories_created=self.categories_created + other.categories_created,
            processed=self.processed + other.processed,
            total=other.total if other.total is not None else self.total,
            removed=self.removed + other.removed,
            restored=self.restored + other.restored,
        )


@dataclass(frozen=True, slots=True)
class ProductChange:
    """One product a run removed or restored (or, in a plan, would change), for the run's detail."""

    external_id: str
    handle: str | None
    kind: str  # 'create', 'update', 'remove' or 'restore'
    action: str | None = None  # a removal's: 'archive' or 'delete'
    fields: str | None = None  # JSON array of the fields an update changes


@dataclass(frozen=True, slots=True)
class ItemError:
    position: int
    external_id: str | None
    reason: str
