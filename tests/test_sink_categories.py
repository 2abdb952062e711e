"""The SQLite sink's known categories: only what committed batches created, so a rolled-back batch's
categories never decide a later one."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.catalog.mapping import ProductRow, map_item
from service.catalog.tables_sink import CatalogTablesSink
from service.ledger.records import RunNoLongerRunning
from tests.engine_fixtures import harness
from tests.upstream import make_product


def _row(product_id: int, category: str) -> ProductRow:
    row = map_item(make_product(product_id, category=category), product_id - 1, "USD")
    assert isinstance(row, ProductRow)
    return row


async def test_a_rolled_back_batch_leaves_no_category_behind(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        sink = CatalogTablesSink(h.ledger, h.db)
        first = await h.ledger.start_run("tester", None)
        written = await sink.write(first.id, [_row(1, "beauty")], [], 1, None)
        assert written.counts.categories_created == 1
        await h.ledger.finish_run(first.id, "success")
        # A batch of a run that was finished meanwhile rolls back, its new category with it.
        with pytest.raises(RunNoLongerRunning):
            await sink.write(first.id, [_row(2, "T-Shirts")], [], 1, None)
        second = await h.ledger.start_run("tester", None)
        # "t shirts" makes the handle of "T-Shirts": refused only if "T-Shirts" were in the catalog.
        written = await sink.write(second.id, [_row(3, "t shirts")], [], 1, None)
        assert list(written.refused) == [] and written.counts.created == 1
        assert written.counts.categories_created == 1
        # What committed is known from then on: the clash with a category that exists is refused.
        clash = await sink.write(second.id, [_row(4, "T-Shirts")], [], 1, None)
        assert [error.external_id for error in clash.refused] == ["4"]
        names = await h.db.fetch_all("SELECT name FROM categories ORDER BY name")
        assert [row["name"] for row in names] == ["beauty", "t shirts"]
