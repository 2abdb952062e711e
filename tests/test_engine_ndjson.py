"""A large NDJSON feed streamed through the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpServer

from service.demo_upstream.products import SyntheticCatalog
from service.demo_upstream.server import build_demo_app
from tests.conftest import BOTH_BACKENDS
from tests.engine_fixtures import harness

pytestmark = BOTH_BACKENDS


@pytest.mark.parametrize(
    "feed_size", [5_000, pytest.param(100_000, marks=pytest.mark.slow)], ids=["5k", "100k"]
)
async def test_a_large_ndjson_feed_syncs_with_exact_counts(
    tmp_path: Path, store_settings: dict[str, Any], aiohttp_server: AiohttpServer, feed_size: int
) -> None:
    server = await aiohttp_server(build_demo_app(SyntheticCatalog(feed_size)))
    url = str(server.make_url("/products.ndjson"))
    async with harness(tmp_path, **store_settings, source_format="ndjson") as h:
        run = await h.sync(url)
        assert run.status == "success", run.error_message
        assert (run.created, run.updated, run.errors, run.processed, run.total) == (
            feed_size,
            0,
            0,
            feed_size,
            feed_size,
        )
        assert run.categories_created == 24
        assert await h.scalar("SELECT count(*) FROM products") == feed_size
        assert await h.scalar("SELECT count(DISTINCT handle) FROM products") == feed_size
        assert await h.scalar("SELECT max(CAST(external_id AS INTEGER)) FROM products") == feed_size
        await h.assert_ledger_matches_catalog(run.id)
        again = await h.sync(url)
        assert (again.created, again.updated, again.unchanged) == (0, 0, feed_size)
