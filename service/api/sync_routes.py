"""The contract's endpoints: trigger, status, and (added) cancel."""

from __future__ import annotations

import logging
import sqlite3

from aiohttp import web

from service.api.auth import Principal
from service.api.errors import STORAGE_ERRORS, ApiError, could_not, json_response
from service.api.schemas import (
    AlreadyRunningData,
    AlreadyRunningResponse,
    CancelData,
    CancelResponse,
    TriggerData,
    TriggerResponse,
)
from service.keys import LEDGER, PRINCIPAL, RUNNER, STATUS_BODIES
from service.ledger.runs import Ledger, NoRunRunning, RunAlreadyRunning, RunRecord
from service.sync.job import SyncFailed

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def principal_of(request: web.Request) -> Principal:
    # The auth middleware sets it on every protected /admin route; a KeyError here is a routing bug.
    return request[PRINCIPAL]


@routes.post("/admin/sync/trigger")
async def trigger(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    try:
        run = await runner.trigger(principal_of(request).token_name)
    except RunAlreadyRunning as exc:
        body = AlreadyRunningResponse(
            data=AlreadyRunningData(startedAt=exc.running.started_at, runId=exc.running.id)
        )
        return json_response(body, status=409)
    except (*STORAGE_ERRORS, SyncFailed, OSError) as exc:
        # A read-only or full disk, a database locked past the busy timeout, a shutdown in progress.
        raise could_not("start the sync", exc) from exc
    return json_response(TriggerResponse(data=TriggerData(startedAt=run.started_at, runId=run.id)))


@routes.get("/admin/sync/status")
async def status(request: web.Request) -> web.Response:
    try:
        run = await _status_run(request.app[LEDGER])
    except STORAGE_ERRORS as exc:
        raise could_not("read the sync status", exc) from exc
    return web.Response(body=request.app[STATUS_BODIES].body(run), content_type="application/json")


async def _status_run(ledger: Ledger) -> RunRecord | None:
    run = await ledger.latest_run()
    # Another process's run: if that process died or hung, record it now rather than report it running.
    if run is not None and run.is_running and run.owner != ledger.owner.owner_id:
        try:
            if await ledger.recover_dead_runs() is not None:
                run = await ledger.latest_run()
        except sqlite3.Error as exc:  # e.g. a read-only file: report what the ledger says
            log.warning("could not record the recovery of a dead run: %s", exc)
    return run


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
