"""Operations: liveness and readiness probes (cheap, unauthenticated), metrics, the API document."""

from __future__ import annotations

from aiohttp import web

from service.api.errors import STORAGE_ERRORS, ApiError, could_not, json_response
from service.api.http_metrics import CONTENT_TYPE
from service.api.keys import (
    AUTHENTICATOR,
    LEDGER,
    METRICS,
    OPENAPI_DOCUMENT,
    SCHEDULER,
    SETTINGS,
    SINK_INFO,
)
from service.api.metrics import ScheduleFigures, render_metrics
from service.api.schemas import HealthResponse, ReadyResponse
from service.api.status_body import sink_data

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return json_response(HealthResponse())


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    try:
        version, expected = await request.app[LEDGER].schema_version()
    except STORAGE_ERRORS as exc:
        raise ApiError(503, f"Database unavailable: {exc}") from exc
    if version < expected:
        raise ApiError(503, f"Database schema at version {version}, expected {expected}")
    return json_response(ReadyResponse(schemaVersion=version, sink=sink_data(request.app[SINK_INFO])))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    if request.app[SETTINGS].metrics_require_auth:
        request.app[AUTHENTICATOR].authenticate(request)
    ledger, scheduler = request.app[LEDGER], request.app[SCHEDULER]
    try:
        schedule = (
            ScheduleFigures(scheduler.next_run_at(), await ledger.tick_counts())
            if scheduler is not None
            else None
        )
        body = render_metrics(request.app[METRICS], await ledger.snapshot(), schedule)
    except STORAGE_ERRORS as exc:
        raise could_not("read the metrics", exc) from exc
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")
