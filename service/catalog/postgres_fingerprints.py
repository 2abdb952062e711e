"""The fingerprint lookup of a catalog on PostgreSQL, run in the mapping workers.

A worker is a plain process without an event loop of its own: each lookup opens a session, asks, and
closes it (a few milliseconds, against the tens a chunk's mapping costs). asyncpg is imported only here
and only when called, so the workers of a service on SQLite never load it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.catalog.sink import StoredFingerprints
from service.catalog.sql import SELECT_FINGERPRINTS
from service.database.list_params import json_array

# A lookup that cannot be answered this soon is skipped: the items are then mapped, only slower.
_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class PostgresFingerprints:
    """``query`` selects (external id, content hash, source hash) for the ids in its last parameter,
    after the ``scope`` parameters, as :class:`SqliteFingerprints` does."""

    url: str = field(repr=False)  # holds the credentials
    query: str = SELECT_FINGERPRINTS["postgres"]
    scope: tuple[str, ...] = ()

    def __call__(self, external_ids: Sequence[str]) -> Mapping[str, StoredFingerprints]:
        import asyncpg

        from service.database.postgres import Compiled

        statement = Compiled(self.query).sql

        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(self.url, timeout=_CONNECT_TIMEOUT_S)
            try:
                return list(await conn.fetch(statement, *self.scope, json_array(external_ids)))
            finally:
                await conn.close()

        try:
            found = asyncio.run(fetch())
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return {}  # every item is then mapped, which is only slower
        return {external_id: StoredFingerprints(content, source) for external_id, content, source in found}
