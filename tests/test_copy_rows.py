"""The seam's bulk append (``Statements.copy_rows``) on either backend: rows land in the transaction,
and leave with it when it rolls back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.resources import open_migrated
from tests.conftest import BOTH_BACKENDS, make_settings

pytestmark = BOTH_BACKENDS

INSERT_RUN = (
    "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)"
    " VALUES ('running', :now, :now, 'admin', 'host.1.a') RETURNING id"
)
NOW = "2026-12-01T17:00:00.000Z"


async def test_copied_rows_commit_with_their_transaction_and_go_with_a_rollback(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    database = await open_migrated(make_settings(tmp_path, **store_settings))
    try:
        columns = ("handle", "name", "created_run", "created_at")
        async with database.transaction() as tx:
            ((run_id,),) = await tx.fetch_all(INSERT_RUN, {"now": NOW})
            await tx.copy_rows("categories", columns, [("a", "A", run_id, NOW), ("b", "B", run_id, NOW)])
        with pytest.raises(RuntimeError, match="changed my mind"):
            async with database.transaction() as tx:
                await tx.copy_rows("categories", columns, [("c", "C", run_id, NOW)])
                raise RuntimeError("changed my mind")
        rows = await database.fetch_all("SELECT handle, name, created_at FROM categories ORDER BY handle")
        assert [tuple(row) for row in rows] == [("a", "A", NOW), ("b", "B", NOW)]
    finally:
        await database.close()
