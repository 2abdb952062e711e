"""Helpers for the engine tests: a real ledger on a tmp_path SQLite file (or the test's PostgreSQL
database, given its ``database_url``) and a run driven to its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from service.catalog.sink import CatalogSink
from service.catalog.tables_sink import CatalogTablesSink
from service.database.access import Database
from service.domain.errors import SyncFailed
from service.ledger.records import RunRecord
from service.ledger.runs import Ledger
from service.resources import open_database
from service.settings import DEFAULT_MIGRATIONS_DIR, Settings
from service.sync.engine import run_catalog_sync
from service.sync.job import RunContext


def engine_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for tests: small timeouts and fast retries so faults resolve quickly."""
    values: dict[str, Any] = {
        "db_path": tmp_path / "catalog.db",
        "connect_timeout_s": 2.0,
        "read_timeout_s": 2.0,
        "retry_attempts": 4,
        "retry_base_delay_s": 0.01,
        "retry_max_delay_s": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Harness:
    settings: Settings
    db: Database
    ledger: Ledger
    http: aiohttp.ClientSession

    async def start(
        self, url: str, sink: CatalogSink | None = None, **overrides: Any
    ) -> tuple[RunRecord, asyncio.Task[None]]:
        """Start a run and its sync of ``url`` as a task; the caller awaits, cancels or races it."""
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        run = await self.ledger.start_run("tester", url)
        ctx = RunContext(
            run=run,
            ledger=self.ledger,
            settings=settings,
            sink=sink or CatalogTablesSink(self.ledger, self.db),
            http=self.http,
            source_url=url,
        )
        return run, asyncio.create_task(run_catalog_sync(ctx))

    async def sync(self, url: str, sink: CatalogSink | None = None, **overrides: Any) -> RunRecord:
        """Start a run, sync ``url`` into the catalog, finish the run as the runner would; return its row."""
        run, task = await self.start(url, sink, **overrides)
        try:
            await task
        except SyncFailed as exc:
            await self.ledger.finish_run(run.id, "error", error_message=str(exc))
        else:
            await self.ledger.finish_run(run.id, "success")
        finished = await self.ledger.get_run(run.id)
        assert finished is not None
        return finished

    async def products(self) -> dict[str, Mapping[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT p.*, c.handle AS category_handle, c.name AS category_name"
            " FROM products p JOIN categories c ON c.id = p.category_id"
        )
        return {row["external_id"]: dict(zip(row.keys(), tuple(row), strict=True)) for row in rows}

    async def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = await self.db.fetch_one(sql, params)
        assert row is not None
        return row[0]

    async def run_errors(self, run_id: int) -> list[tuple[int, str | None, str]]:
        rows = await self.db.fetch_all(
            "SELECT position, external_id, reason FROM run_errors WHERE run_id = ? ORDER BY position",
            (run_id,),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    async def assert_ledger_matches_catalog(self, run_id: int) -> None:
        """The run's counters are exactly what the catalog holds from that run."""
        run = await self.ledger.get_run(run_id)
        assert run is not None
        created = await self.scalar("SELECT count(*) FROM products WHERE created_run = ?", (run_id,))
        updated = await self.scalar(
            "SELECT count(*) FROM products WHERE updated_run = ? AND created_run <> ?", (run_id, run_id)
        )
        categories = await self.scalar("SELECT count(*) FROM categories WHERE created_run = ?", (run_id,))
        errors = await self.scalar("SELECT count(*) FROM run_errors WHERE run_id = ?", (run_id,))
        assert (run.created, run.updated, run.categories_created, run.errors) == (
            created,
            updated,
            categories,
            errors,
        )
        assert run.processed == run.created + run.updated + run.unchanged + run.errors


@asynccontextmanager
async def harness(tmp_path: Path, **overrides: Any) -> AsyncIterator[Harness]:
    settings = engine_settings(tmp_path, **overrides)
    async with open_database(settings) as (db, owner), aiohttp.ClientSession() as http:
        yield Harness(settings, db, Ledger(db, owner, settings.stall_timeout_s), http)


__all__ = ["DEFAULT_MIGRATIONS_DIR", "Harness", "engine_settings", "harness"]
