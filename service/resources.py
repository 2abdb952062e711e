"""The pieces a sync needs, as async context managers shared by the HTTP app and the CLI.

``create_app`` wraps each in a ``cleanup_ctx``; ``product-sync sync`` enters them all with
:func:`open_sync_stack`. Either way the same ledger rules, owner lock and retention apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp
from pydantic import SecretStr

from service.catalog.medusa.client import MedusaClient
from service.catalog.medusa.shop import check_shop
from service.catalog.medusa.sink import MedusaSink
from service.catalog.sink import CatalogSink
from service.catalog.tables_sink import CatalogTablesSink
from service.database.access import Database
from service.database.postgres import PostgresDatabase
from service.database.sqlite import SqliteDatabase
from service.demo_upstream.server import DemoUpstream
from service.ledger.owner import Owner, OwnerLock
from service.ledger.pg_owner import PostgresOwnerLock
from service.ledger.retention import apply_retention
from service.ledger.runs import Ledger
from service.notify.outbox import WebhookOutbox
from service.notify.webhooks import Notifier, WebhookPolicy
from service.settings import Settings
from service.support.timeutil import to_iso
from service.sync.engine import run_catalog_sync
from service.sync.job import SyncJob
from service.sync.runner import SyncRunner
from service.sync.scheduler import Scheduler
from service.upstream.http import retry_policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Store:
    """The ledger, the sink the runs write to, and the webhook outbox; all on the one database this
    process opened."""

    ledger: Ledger
    sink: CatalogSink
    outbox: WebhookOutbox


@asynccontextmanager
async def open_sink(settings: Settings, ledger: Ledger, database: Database) -> AsyncIterator[CatalogSink]:
    """The sink the settings choose; a shop sink is checked first (ShopUnusable when it can't be used)."""
    if settings.sink == "sqlite":
        yield CatalogTablesSink(ledger, database)
        return
    assert settings.medusa_url is not None and settings.medusa_api_key is not None
    policy = retry_policy(settings)
    # A session of its own (same timeouts as the feed's): the shop's connections are not the feed's.
    async with open_http_client(settings) as session:
        client = MedusaClient(session, settings.medusa_url, settings.medusa_api_key, policy)
        shop = await check_shop(client, settings.medusa_sales_channel_id, settings.currency)
        log.info(
            "products go to Medusa at %s (sales channel %s, %s)",
            client.target,
            shop.sales_channel_id,
            shop.currency_code,
        )
        yield MedusaSink(
            ledger,
            database,
            client,
            shop,
            status=settings.medusa_product_status,
            batch_bytes=settings.medusa_batch_bytes,
            concurrency=settings.medusa_concurrency,
            policy=policy,
        )


async def _open_sqlite(settings: Settings) -> SqliteDatabase:
    return await SqliteDatabase.open(settings.db_path, settings.migrations_dir, settings.busy_timeout_s)


async def _open_postgres(url: SecretStr, settings: Settings, *, migrate: bool = True) -> PostgresDatabase:
    return await PostgresDatabase.open(
        url.get_secret_value(),
        pool_size=settings.database_pool_size,
        migrate=migrate,
        hold_timeout_s=settings.database_hold_timeout_s,
    )


async def open_migrated(settings: Settings, *, migrate: bool = True) -> Database:
    """The database the settings choose, opened (and migrated, unless ``migrate`` is False on
    PostgreSQL, where an auditor's role may only read); the caller closes it."""
    if settings.database_url is None:
        return await _open_sqlite(settings)
    return await _open_postgres(settings.database_url, settings, migrate=migrate)


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[tuple[Database, Owner]]:
    """The database the settings choose, opened and migrated, and this process's owner lock on it."""
    if settings.database_url is None:
        sqlite = await _open_sqlite(settings)
        file_owner = OwnerLock(OwnerLock.lock_dir_for(settings.db_path))
        try:
            file_owner.acquire()
            yield sqlite, file_owner
        finally:
            await sqlite.close()
            file_owner.release()
        return
    postgres = await _open_postgres(settings.database_url, settings)
    lock_owner = PostgresOwnerLock(postgres)
    try:
        await lock_owner.acquire()
        yield postgres, lock_owner
    finally:
        await lock_owner.release()
        await postgres.close()


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """Open (and migrate) the database, take this process's owner lock, recover dead runs, prune."""
    async with open_database(settings) as (database, owner):
        ledger = Ledger(database, owner, settings.stall_timeout_s)
        recovered = await ledger.recover_dead_runs()
        if recovered is not None:
            log.warning(
                "run %s was left running by a process that is gone; recorded as interrupted", recovered.id
            )
        await apply_retention(ledger, settings)
        async with open_sink(settings, ledger, database) as sink:
            yield Store(ledger, sink, WebhookOutbox(database))


@asynccontextmanager
async def open_http_client(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.connect_timeout_s, sock_read=settings.read_timeout_s
    )
    async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session:
        yield session


@asynccontextmanager
async def open_source(settings: Settings) -> AsyncIterator[str]:
    """The feed URL: the configured one, or the built-in demo upstream started on loopback."""
    if settings.source_url:
        yield settings.source_url
        return
    upstream = DemoUpstream(count=settings.demo_product_count, source_format=settings.source_format)
    url = await upstream.start()
    log.info("no SYNC_SOURCE_URL set: syncing from the built-in demo upstream at %s", url)
    try:
        yield url
    finally:
        await upstream.close()


@asynccontextmanager
async def open_runner(
    store: Store, settings: Settings, http: aiohttp.ClientSession, job: SyncJob, source_url: str
) -> AsyncIterator[SyncRunner]:
    runner = SyncRunner(store.ledger, settings, http, job, source_url, store.sink)
    try:
        yield runner
    finally:
        # Before the database closes (exit order is reverse), so a running row gets finished.
        await runner.close()


@asynccontextmanager
async def open_scheduler(
    settings: Settings, runner: SyncRunner, ledger: Ledger
) -> AsyncIterator[Scheduler | None]:
    """The schedule's loop as a task of its own, for the life of the context (None: no schedule)."""
    schedule = settings.cron_schedule()
    if schedule is None:
        yield None
        return
    scheduler = Scheduler(schedule, runner, ledger, catch_up=settings.schedule_catch_up)
    task = asyncio.create_task(scheduler.run(), name="schedule")
    next_due = to_iso(scheduler.next_run_at())
    log.info("runs start on the schedule %s; the next is due at %s", scheduler.label, next_due)
    try:
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def open_notifier(
    settings: Settings, store: Store, *, in_background: bool
) -> AsyncIterator[Notifier | None]:
    """The webhook notifier (None: no webhook configured), with an HTTP session of its own.

    ``in_background``: its delivery loop runs as a task for the life of the context (the service); the
    CLI instead makes one pass when its run has ended.
    """
    if not settings.webhook_url:
        yield None
        return
    assert settings.webhook_secret is not None  # the settings refuse URLs without a secret
    policy = WebhookPolicy(
        attempts=settings.webhook_attempts,
        timeout_s=settings.webhook_timeout_s,
        base_delay_s=settings.webhook_retry_base_delay_s,
        max_delay_s=settings.webhook_retry_max_delay_s,
    )
    async with aiohttp.ClientSession(raise_for_status=False) as session:
        notifier = Notifier(
            store.outbox,
            store.ledger,
            session,
            settings.webhook_url,
            settings.webhook_secret.get_secret_value().encode(),
            policy,
        )
        await notifier.start()
        if not in_background:
            yield notifier
            return
        task = asyncio.create_task(notifier.run(), name="webhooks")
        try:
            yield notifier
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True)
class SyncStack:
    ledger: Ledger
    runner: SyncRunner
    notifier: Notifier | None


@asynccontextmanager
async def open_sync_stack(settings: Settings, job: SyncJob | None = None) -> AsyncIterator[SyncStack]:
    """Everything ``create_app``'s cleanup contexts build, for a process without an HTTP server."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings))
        http = await stack.enter_async_context(open_http_client(settings))
        source_url = await stack.enter_async_context(open_source(settings))
        notifier = await stack.enter_async_context(open_notifier(settings, store, in_background=False))
        runner = await stack.enter_async_context(
            open_runner(store, settings, http, job or run_catalog_sync, source_url)
        )
        yield SyncStack(store.ledger, runner, notifier)
