"""What a sync job is given, and how it reports failure: the seam between the runner and the engine."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from service.ledger.runs import Ledger, RunRecord
from service.settings import Settings

if TYPE_CHECKING:  # offload imports SyncFailed from here
    from service.sync.offload import MappingPool


class SyncFailed(Exception):
    """The run cannot go on; ``str(exc)`` is the message the ledger stores as ``lastError``."""


@dataclass(frozen=True)
class RunContext:
    run: RunRecord
    ledger: Ledger
    settings: Settings
    http: aiohttp.ClientSession
    source_url: str  # the configured feed, or the built-in demo upstream's loopback URL
    # The runner's long-lived worker processes; None gives the run its own, shut down when it ends.
    mapping_pool: MappingPool | None = None


# A job streams the feed into the catalog, recording progress through ``ledger`` batch by batch.
# It returns normally on success, raises SyncFailed for a clear failure, and is cancelled (asyncio)
# for cancel, stall and shutdown; the runner records the outcome.
SyncJob = Callable[[RunContext], Coroutine[Any, Any, None]]
