"""CORS for an admin front end served from another origin, allowed origins from ``cors_origins``.

Cross-origin callers authenticate with a bearer token only: no ``Access-Control-Allow-Credentials``
is ever sent, so browsers neither attach nor expose the session cookie cross-origin (it is also
``SameSite=Strict``, and cookie-authenticated writes are refused unless same-origin). Origins not in
the list get no CORS headers at all, and the browser blocks them.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from service.keys import SETTINGS

ALLOWED_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE_S = 600
ANY_ORIGIN = "*"


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    return ANY_ORIGIN in allowed or origin in allowed


def _is_preflight(request: web.Request) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _methods_of_path(request: web.Request) -> list[str] | None:
    """Methods the requested path answers, or None when no route matches it at all."""
    match_info = request.match_info
    exception = match_info.http_exception
    if isinstance(exception, web.HTTPMethodNotAllowed):
        return sorted(exception.allowed_methods)
    resource = match_info.route.resource
    if exception is not None or resource is None:
        return None
    return sorted({route.method for route in resource})


def _add_vary_origin(headers: web.StreamResponse | web.HTTPException) -> None:
    vary = headers.headers.get("Vary")
    if vary is None:
        headers.headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        headers.headers["Vary"] = f"{vary}, Origin"


def _allow(target: web.StreamResponse | web.HTTPException, origin: str) -> None:
    target.headers["Access-Control-Allow-Origin"] = origin
    _add_vary_origin(target)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Installed only when origins are configured (create_app).
    allowed = request.app[SETTINGS].cors_origins
    origin = request.headers.get("Origin")
    if origin is None:
        return await handler(request)
    if not origin_allowed(origin, allowed):
        response = await handler(request)
        _add_vary_origin(response)  # the answer differs by Origin: caches must not share it
        return response
    if _is_preflight(request):
        methods = _methods_of_path(request)
        if methods is not None:
            preflight = web.Response(status=204)
            _allow(preflight, origin)
            preflight.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
            preflight.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            preflight.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
            return preflight
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects pass through the error middleware as exceptions
        _allow(exc, origin)
        raise
    _allow(response, origin)
    return response
