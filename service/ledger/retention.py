"""Retention: prune old item errors (and optionally old runs) at start-up and after every run."""

from __future__ import annotations

import logging

from service.database.errors import STORAGE_FAULTS
from service.ledger.runs import Ledger
from service.settings import Settings

log = logging.getLogger(__name__)


async def apply_retention(ledger: Ledger, settings: Settings) -> tuple[int, int]:
    """Prune per the settings; return (item errors, runs) deleted.

    A failure is logged, not raised: retention is housekeeping and must never fail a run or a start-up.
    """
    if settings.error_retention_days is None and settings.run_retention_days is None:
        return 0, 0
    try:
        errors_deleted, runs_deleted = await ledger.prune(
            settings.error_retention_days, settings.run_retention_days
        )
    except STORAGE_FAULTS as exc:
        log.warning("retention pruning failed, will retry after the next run: %s", exc)
        return 0, 0
    if errors_deleted or runs_deleted:
        log.info(
            "retention pruned %d item errors and %d runs",
            errors_deleted,
            runs_deleted,
            extra={"pruned_errors": errors_deleted, "pruned_runs": runs_deleted},
        )
    return errors_deleted, runs_deleted
