"""Operations: liveness and readiness probes (cheap, unauthenticated), metrics, the API document."""

from __future__ import annotations

from aiohttp import web

from service.api.errors import STORAGE_ERRORS, ApiError, could_not, json_response
from service.api.schemas import HealthResponse, ReadyResponse
from service.keys import AUTHENTICATOR, DATABASE, METRICS, OPENAPI_DOCUMENT, SETTINGS
from service.metrics import CONTENT_TYPE, render_metrics

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return json_response(HealthResponse())


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    database = request.app[DATABASE]
    expected = database.schema_version
    try:
        # The same check every read and write makes (fetch_one makes it once per turn of the loop), here
        # on every probe: a deleted file keeps answering reads through the connections still open to it.
        database.check_file()
        row = await database.fetch_one("SELECT max(version) FROM schema_migrations")
    except STORAGE_ERRORS as exc:
        raise ApiError(503, f"Database unavailable: {exc}") from exc
    version = int(row[0]) if row and row[0] is not None else 0
    if version < expected:
        raise ApiError(503, f"Database schema at version {version}, expected {expected}")
    return json_response(ReadyResponse(schemaVersion=version))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    if request.app[SETTINGS].metrics_require_auth:
        request.app[AUTHENTICATOR].authenticate(request)
    try:
        body = await render_metrics(request.app[METRICS], request.app[DATABASE])
    except STORAGE_ERRORS as exc:
        raise could_not("read the metrics", exc) from exc
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")
