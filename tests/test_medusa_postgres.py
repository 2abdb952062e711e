"""The shop sink with its ledger on PostgreSQL: the cluster Medusa itself runs on, as a shop that
already has one would set it up (a database of its own there)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer

from tests.conftest import admin_statement
from tests.medusa_shop import Shop, run_sync, sync_env
from tests.postgres_rows import pg_query
from tests.test_medusa_sink import feed_url
from tests.upstream import FeedControl, make_product

pytestmark = pytest.mark.medusa


@pytest.fixture
def ledger_url(shop: Shop) -> Iterator[str]:
    cluster = shop.server.postgres
    name = f"sync_{secrets.token_hex(4)}"
    admin_statement(cluster, f'CREATE DATABASE "{name}"')
    yield cluster.url(name)
    admin_statement(cluster, f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_a_shop_sync_with_its_ledger_on_postgresql_publishes_then_sends_nothing_unchanged(
    shop: Shop, tmp_path: Path, aiohttp_server: AiohttpServer, ledger_url: str
) -> None:
    control = FeedControl(products=[make_product(i) for i in range(1, 31)])
    env = sync_env(
        shop, tmp_path / "unused.db", await feed_url(aiohttp_server, control), SYNC_DATABASE_URL=ledger_url
    )
    first = await run_sync(env)
    assert first.code == 0, first
    published = {p["external_id"] for p in shop.products("id,external_id") if p["external_id"]}
    assert published == {str(i) for i in range(1, 31)}
    links = await pg_query(ledger_url, "SELECT count(*) FROM medusa_products")
    assert links[0][0] == 30

    mark = shop.log_mark()
    again = await run_sync(env)
    assert again.code == 0, again
    assert shop.write_requests_since(mark) == []  # nothing changed: nothing sent
    runs = await pg_query(ledger_url, "SELECT status, created, unchanged FROM runs ORDER BY id")
    assert [tuple(run) for run in runs] == [("success", 30, 0), ("success", 0, 30)]
    assert not (tmp_path / "unused.db").exists()
