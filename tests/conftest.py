"""Fixtures shared by the suites: settings on a real SQLite file, a real upstream, a real app."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from scripts.throwaway_medusa import MedusaServer, free_port
from scripts.throwaway_postgres import PostgresCluster, running_cluster
from service.app import create_app
from service.database.postgres import PostgresDatabase
from service.database.sqlite import SqliteDatabase
from service.ledger.owner import OwnerLock
from service.ledger.pg_owner import PostgresOwnerLock
from service.ledger.runs import Ledger
from service.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.medusa_shop import Shop
from tests.postgres_rows import on_own_loop
from tests.upstream import FeedControl, dummyjson_app, make_product

pytest_plugins = ["tests.reliability_report"]

ADMIN_TOKEN = "test-admin-token-0123456789"
OTHER_TOKEN = "test-ci-token-9876543210"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

AiohttpServer = Callable[..., Awaitable[TestServer]]
AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db_path": tmp_path / "sync.db",
        "admin_tokens": {"admin": SecretStr(ADMIN_TOKEN), "ci": SecretStr(OTHER_TOKEN)},
        "retry_base_delay_s": 0.01,
        "retry_max_delay_s": 0.05,
        "watchdog_interval_s": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def feed() -> FeedControl:
    return FeedControl(products=[make_product(i) for i in range(1, 195)])


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
async def database(ledger_file: Path) -> AsyncIterator[SqliteDatabase]:
    """The database of the ``ledger`` fixture, for tests of what lies below the ledger."""
    database = await SqliteDatabase.open(ledger_file, DEFAULT_MIGRATIONS_DIR)
    yield database
    await database.close()


@pytest.fixture
async def ledger(
    backend: str, database: SqliteDatabase, request: pytest.FixtureRequest
) -> AsyncIterator[Ledger]:
    """A ledger owned by this process, on a fresh file in tmp_path (the ``database`` fixture's), or on
    a new PostgreSQL database when the test runs on that backend."""
    if backend == "sqlite":
        owner = OwnerLock(OwnerLock.lock_dir_for(database.path))
        owner.acquire()
        yield Ledger(database, owner, stall_timeout_s=60)
        owner.release()
        return
    postgres = await PostgresDatabase.open(request.getfixturevalue("postgres_url"))
    lock = PostgresOwnerLock(postgres)
    await lock.acquire()
    yield Ledger(postgres, lock, stall_timeout_s=60)
    await lock.release()
    await postgres.close()


@pytest.fixture
async def upstream_url(aiohttp_server: AiohttpServer, feed: FeedControl) -> str:
    server = await aiohttp_server(dummyjson_app(feed), host="127.0.0.1")
    return str(server.make_url("/products"))


# A module whose tests hold on either backend runs each of them on both: ``pytestmark = BOTH_BACKENDS``.
# The PostgreSQL cases carry the postgres marker, so the quick suite stays on SQLite and the postgres
# suite runs them.
BOTH_BACKENDS = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database the test's service uses: SQLite unless the module runs on BOTH_BACKENDS."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings that put the ledger and catalog on the test's backend (a new database each)."""
    if backend == "sqlite":
        return {}
    return {"database_url": SecretStr(request.getfixturevalue("postgres_url"))}


@pytest.fixture
def aiohttp_client(store_settings: dict[str, Any], aiohttp_client: AiohttpClient) -> AiohttpClient:
    """pytest-aiohttp's client factory, set up after the test's database (store_settings): fixtures are
    torn down in reverse, so every app a test starts is closed before its PostgreSQL database is dropped."""
    return aiohttp_client


@pytest.fixture
def settings(tmp_path: Path, upstream_url: str, store_settings: dict[str, Any]) -> Settings:
    return make_settings(tmp_path, source_url=upstream_url, page_size=50, **store_settings)


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(settings))


async def wait_for_status(
    client: TestClient[web.Request, web.Application],
    predicate: Callable[[dict[str, Any]], bool],
    timeout_s: float = 20.0,
) -> dict[str, Any]:
    """Poll GET /admin/sync/status until ``predicate(data)`` holds; fail with the last answer otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    data: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        response = await client.get("/admin/sync/status", headers=AUTH)
        assert response.status == 200
        data = (await response.json())["data"]
        if predicate(data):
            return data
        await asyncio.sleep(0.02)
    raise AssertionError(f"status never satisfied the condition; last answer: {data}")


async def wait_until(
    predicate: Callable[[], object], timeout_s: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` (a plain function: a file, a receiver's list) until it holds; fail otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never held")


def finished(data: dict[str, Any]) -> bool:
    return data["isRunning"] is False and data["lastStatus"] != "idle"


async def sync_once(client: TestClient[web.Request, web.Application]) -> dict[str, Any]:
    """Trigger a run (it must be accepted) and return the status once it has finished."""
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    assert response.status == 200, await response.text()
    return await wait_for_status(client, finished)


@pytest.fixture(scope="session")
def medusa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MedusaServer]:
    """A real Medusa v2 (PostgreSQL + the pinned app in scripts/medusa), started once per session.

    When it cannot start, the tests that use it fail with the reason: they are never skipped.
    """
    server = MedusaServer(tmp_path_factory.mktemp("medusa"))
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster (initdb, pg_ctl) on loopback, started once per session.

    When it cannot start, the tests that use it fail with the reason: they are never skipped.
    """
    with running_cluster(free_port()) as cluster:
        yield cluster


def admin_statement(cluster: PostgresCluster, statement: str) -> None:
    async def run() -> None:
        admin = await asyncpg.connect(cluster.url("postgres"))
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    on_own_loop(run())


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A new, empty database on the session's cluster, dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    admin_statement(postgres_cluster, f'CREATE DATABASE "{name}"')
    yield postgres_cluster.url(name)
    admin_statement(postgres_cluster, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def shop(medusa_server: MedusaServer) -> Shop:
    """The Medusa of this session, with no product and no category left by an earlier test."""
    found = Shop(medusa_server)
    found.empty()
    return found
