"""What a sync job is given: the seam between the runner and the engine.

A job reports failure by raising ``SyncFailed`` (``service.domain.errors``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from service.catalog.sink import CatalogSink
from service.ledger.records import RunRecord
from service.ledger.runs import Ledger
from service.settings import Settings
from service.transport.offload import MappingPool


@dataclass(frozen=True)
class RunContext:
    run: RunRecord
    ledger: Ledger
    settings: Settings
    sink: CatalogSink
    http: aiohttp.ClientSession
    source_url: str  # the configured feed, or the built-in demo upstream's loopback URL
    # The runner's long-lived worker processes; None gives the run its own, shut down when it ends.
    mapping_pool: MappingPool | None = None


# A job streams the feed into the catalog, recording progress through ``ledger`` batch by batch.
# It returns normally on success, raises SyncFailed for a clear failure, and is cancelled (asyncio)
# for cancel, stall and shutdown; the runner records the outcome.
SyncJob = Callable[[RunContext], Coroutine[Any, Any, None]]
