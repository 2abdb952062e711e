"""The application factory: routes, middlewares, and one cleanup_ctx per resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from service.api import ops_routes, runs_routes, session_routes, sync_routes
from service.api.auth import Authenticator
from service.api.errors import ApiError, Handler, error_middleware
from service.keys import (
    AUTHENTICATOR,
    DATABASE,
    HTTP_CLIENT,
    LEDGER,
    PRINCIPAL,
    RUNNER,
    SETTINGS,
    SOURCE_URL,
    SYNC_JOB,
)
from service.ledger.db import Database
from service.ledger.owner import OwnerLock
from service.ledger.runs import Ledger
from service.settings import Settings
from service.sync.demo_upstream import DemoUpstream
from service.sync.engine import run_catalog_sync
from service.sync.job import SyncJob
from service.sync.runner import SyncRunner

log = logging.getLogger(__name__)

# Reachable without credentials: probes, the admin page's files, and the sign-in itself.
_PUBLIC_ADMIN = frozenset({("GET", "/admin/"), ("GET", "/admin"), ("POST", "/admin/session")})


def _needs_auth(request: web.Request) -> bool:
    path = request.path
    if not path.startswith("/admin"):
        return False
    if (request.method, path) in _PUBLIC_ADMIN or path.startswith("/admin/static/"):
        return False
    return request.method != "OPTIONS"  # CORS preflights carry no credentials


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _needs_auth(request):
        request[PRINCIPAL] = request.app[AUTHENTICATOR].authenticate(request)
    return await handler(request)


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    limit = request.app[SETTINGS].max_request_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"Request body too large (limit {limit} bytes)")
    return await handler(request)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    owner = OwnerLock(OwnerLock.lock_dir_for(settings.db_path))
    database = await Database.open(settings.db_path, settings.migrations_dir, settings.busy_timeout_s)
    owner.acquire()
    ledger = Ledger(database, owner, settings.stall_timeout_s)
    recovered = await ledger.recover_dead_runs()
    if recovered is not None:
        log.warning(
            "run %s was left running by a process that is gone; recorded as interrupted", recovered.id
        )
    app[DATABASE] = database
    app[LEDGER] = ledger
    yield
    await database.close()
    owner.release()


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.connect_timeout_s, sock_read=settings.read_timeout_s
    )
    async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session:
        app[HTTP_CLIENT] = session
        yield


async def source_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.source_url:
        app[SOURCE_URL] = settings.source_url
        yield
        return
    upstream = DemoUpstream(count=settings.demo_product_count, source_format=settings.source_format)
    app[SOURCE_URL] = await upstream.start()
    log.info("no SYNC_SOURCE_URL set: syncing from the built-in demo upstream at %s", app[SOURCE_URL])
    try:
        yield
    finally:
        await upstream.close()


async def runner_ctx(app: web.Application) -> AsyncIterator[None]:
    runner = SyncRunner(app[LEDGER], app[SETTINGS], app[HTTP_CLIENT], app[SYNC_JOB], app[SOURCE_URL])
    app[RUNNER] = runner
    yield
    # Runs before the database closes (cleanup is in reverse order), so the row gets finished.
    await runner.close()


def create_app(settings: Settings, *, job: SyncJob | None = None) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, body_limit_middleware, auth_middleware],
        client_max_size=settings.max_request_body_bytes,
    )
    app[SETTINGS] = settings
    app[AUTHENTICATOR] = Authenticator(settings.admin_tokens, settings.session_ttl_s)
    app[SYNC_JOB] = job or run_catalog_sync
    app.cleanup_ctx.extend([database_ctx, http_client_ctx, source_ctx, runner_ctx])
    for table in (sync_routes.routes, runs_routes.routes, session_routes.routes, ops_routes.routes):
        app.add_routes(table)
    return app
