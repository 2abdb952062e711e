"""The one middleware every request passes through: metrics, CORS, the error shape, the body limit and
credentials, in that order from the outside in.

One layer, not four or five: in aiohttp each middleware is one more coroutine on every request, and the
first costs a fixed set-up besides. Status polls are the bulk of the traffic (dashboards poll many times
a second, and keep polling during a sync), and separate layers were a large share of a poll's cost
(docs/benchmarks.md). Each concern is still a plain function of its own; only the layering is shared.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from service.api.auth import Authenticator
from service.api.cors import cors_decorate, cors_preflight
from service.api.errors import STORAGE_ERRORS, ApiError, Handler, error_response, http_error_response
from service.api.http_metrics import HttpMetrics, route_template
from service.api.keys import PRINCIPAL

log = logging.getLogger(__name__)

# Reachable without credentials: probes, the admin page's files, and the sign-in itself.
_PUBLIC_ADMIN = frozenset(
    {
        ("GET", "/admin/"),
        ("HEAD", "/admin/"),
        ("GET", "/admin"),
        ("HEAD", "/admin"),
        ("POST", "/admin/session"),
    }
)


def needs_auth(request: web.Request) -> bool:
    path = request.path
    if not path.startswith("/admin"):
        return False
    if (request.method, path) in _PUBLIC_ADMIN or path.startswith("/admin/static/"):
        return False
    return request.method != "OPTIONS"  # CORS preflights carry no credentials


def check_body_size(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"Request body too large (limit {limit} bytes)")


def edge_middleware(
    metrics: HttpMetrics,
    authenticator: Authenticator,
    max_body_bytes: int,
    cors_origins: tuple[str, ...],
) -> Middleware:
    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500  # what the metrics record if the answer never completes
        origin = request.headers.get("Origin") if cors_origins else None
        try:
            try:
                preflight = cors_preflight(request, origin, cors_origins) if origin is not None else None
                if preflight is not None:
                    response: web.StreamResponse = preflight
                else:
                    check_body_size(request, max_body_bytes)
                    if needs_auth(request):
                        request[PRINCIPAL] = authenticator.authenticate(request)
                    response = await handler(request)
            except ApiError as exc:
                response = error_response(exc.status, exc.message, exc.headers)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise  # redirects and the like pass through
                response = http_error_response(exc)
            except STORAGE_ERRORS as exc:
                # A route that does not name its database failure still answers with SQLite's message.
                log.error("database error in %s %s: %s", request.method, request.path, exc)
                response = error_response(500, f"Database error: {exc}")
            except Exception:
                # The traceback goes to the log; the client gets the shape, never internals.
                log.exception("unhandled error in %s %s", request.method, request.path)
                response = error_response(500, "Internal server error")
            if origin is not None:
                cors_decorate(response, origin, cors_origins)
            status = response.status
            return response
        except web.HTTPException as exc:
            if origin is not None:
                cors_decorate(exc, origin, cors_origins)
            status = exc.status
            raise
        finally:
            metrics.observe(request.method, route_template(request), status, time.perf_counter() - started)

    return edge
