"""The application factory: routes, middlewares, and one cleanup_ctx per resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from service.api import ops_routes, runs_routes, session_routes, sync_routes
from service.api.auth import Authenticator
from service.api.edge import edge_middleware
from service.api.http_metrics import HttpMetrics
from service.api.keys import (
    AUTHENTICATOR,
    HTTP_CLIENT,
    LEDGER,
    METRICS,
    OPENAPI_DOCUMENT,
    OUTBOX,
    RUNNER,
    SCHEDULER,
    SETTINGS,
    SINK_INFO,
    SOURCE_URL,
    STATUS_BODY_CACHE,
    SYNC_JOB,
)
from service.api.openapi import build_document
from service.api.static_routes import add_static_routes
from service.api.status_body import StatusBodyCache
from service.resources import (
    Store,
    open_http_client,
    open_notifier,
    open_runner,
    open_scheduler,
    open_source,
    open_store,
)
from service.settings import Settings
from service.sync.engine import run_catalog_sync
from service.sync.job import SyncJob

log = logging.getLogger(__name__)

_MAX_HEADER_BYTES = 32 * 1024
# The store is composition's own: routes ask the ledger (LEDGER), never the store behind it.
STORE = web.AppKey("store", Store)


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_store(app[SETTINGS]) as store:
        app[STORE] = store
        app[LEDGER] = store.ledger
        app[OUTBOX] = store.outbox
        app[SINK_INFO] = store.sink.describe()
        app[STATUS_BODY_CACHE] = StatusBodyCache(app[SINK_INFO], app[SETTINGS].cron_schedule())
        yield


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_http_client(app[SETTINGS]) as session:
        app[HTTP_CLIENT] = session
        yield


async def source_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_source(app[SETTINGS]) as url:
        app[SOURCE_URL] = url
        yield


async def runner_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_runner(
        app[STORE], app[SETTINGS], app[HTTP_CLIENT], app[SYNC_JOB], app[SOURCE_URL]
    ) as runner:
        app[RUNNER] = runner
        yield


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    # After the runner's context, so it stops first: no tick starts a run while the runner closes.
    async with open_scheduler(app[SETTINGS], app[RUNNER], app[LEDGER]) as scheduler:
        app[SCHEDULER] = scheduler
        yield


async def notifier_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_notifier(app[SETTINGS], app[STORE], in_background=True):
        yield


async def openapi_ctx(app: web.Application) -> AsyncIterator[None]:
    # Built once routes are final (start-up), from the routes actually registered.
    app[OPENAPI_DOCUMENT] = orjson.dumps(build_document(app, app[SETTINGS]))
    yield


def create_app(settings: Settings, *, job: SyncJob | None = None) -> web.Application:
    metrics = HttpMetrics()
    authenticator = Authenticator(settings.admin_tokens, settings.session_ttl_s)
    edge = edge_middleware(metrics, authenticator, settings.max_request_body_bytes, settings.cors_origins)
    app = web.Application(
        middlewares=[edge],
        client_max_size=settings.max_request_body_bytes,
        # Long headers (up to 32 KiB each) still reach the app, so a padded token gets the JSON 401;
        # past that aiohttp answers 400 itself.
        handler_args={"max_field_size": _MAX_HEADER_BYTES, "max_line_size": _MAX_HEADER_BYTES},
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[AUTHENTICATOR] = authenticator
    app[SYNC_JOB] = job or run_catalog_sync
    app.cleanup_ctx.extend(
        [store_ctx, http_client_ctx, source_ctx, runner_ctx, scheduler_ctx, notifier_ctx, openapi_ctx]
    )
    for table in (sync_routes.routes, runs_routes.routes, session_routes.routes, ops_routes.routes):
        app.add_routes(table)
    add_static_routes(app)
    return app
