"""The contract's endpoints: trigger, status, and (added) cancel."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from service.api.auth import Principal
from service.api.errors import STORAGE_ERRORS, ApiError, could_not, json_response
from service.api.keys import LEDGER, PRINCIPAL, RUNNER, SCHEDULER, STATUS_BODY_CACHE
from service.api.schemas import (
    AlreadyRunningData,
    AlreadyRunningResponse,
    CancelData,
    CancelResponse,
    TriggerData,
    TriggerRequest,
    TriggerResponse,
)
from service.domain.errors import SyncFailed
from service.ledger.records import NoRunRunning, RunAlreadyRunning

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def principal_of(request: web.Request) -> Principal:
    # The auth middleware sets it on every protected /admin route; a KeyError here is a routing bug.
    return request[PRINCIPAL]


@routes.post("/admin/sync/trigger")
async def trigger(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    options = await _trigger_options(request)
    try:
        run = await runner.trigger(principal_of(request).token_name, dry_run=options.dryRun)
    except RunAlreadyRunning as exc:
        body = AlreadyRunningResponse(
            data=AlreadyRunningData(startedAt=exc.running.started_at, runId=exc.running.id)
        )
        return json_response(body, status=409)
    except (*STORAGE_ERRORS, SyncFailed, OSError) as exc:
        # A read-only or full disk, a database locked past the busy timeout, a shutdown in progress.
        raise could_not("start the sync", exc) from exc
    data = TriggerData(startedAt=run.started_at, runId=run.id, dryRun=bool(run.dry_run))
    return json_response(TriggerResponse(data=data))


async def _trigger_options(request: web.Request) -> TriggerRequest:
    """The optional body: none (or an empty one) is a real sync, as the contract's curl sends it."""
    body = await request.read()
    if not body.strip():
        return TriggerRequest()
    try:
        return TriggerRequest.model_validate_json(body)
    except ValidationError:
        raise ApiError(400, 'Expected no body, or a JSON body {"dryRun": true|false}') from None


@routes.get("/admin/sync/status")
async def status(request: web.Request) -> web.Response:
    try:
        run = await request.app[LEDGER].current_status()
    except STORAGE_ERRORS as exc:
        raise could_not("read the sync status", exc) from exc
    scheduler = request.app[SCHEDULER]
    next_run_at = scheduler.next_run_at() if scheduler is not None else None
    body = request.app[STATUS_BODY_CACHE].body(run, next_run_at)
    return web.Response(body=body, content_type="application/json")


@routes.post("/admin/sync/cancel")
async def cancel(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    try:
        run_id = await runner.cancel(principal_of(request).token_name)
    except NoRunRunning:
        raise ApiError(409, "No sync is running") from None
    except STORAGE_ERRORS as exc:  # e.g. another process holding the write lock past the busy timeout
        raise could_not("cancel the sync", exc) from exc
    return json_response(CancelResponse(data=CancelData(runId=run_id)))
