"""CORS for an admin front end served from another origin, allowed origins from ``cors_origins``; applied
by the edge middleware (``service.api.edge``) when origins are configured.

Cross-origin callers authenticate with a bearer token only: no ``Access-Control-Allow-Credentials``
is ever sent, so browsers neither attach nor expose the session cookie cross-origin (it is also
``SameSite=Strict``, and cookie-authenticated writes are refused unless same-origin). Origins not in
the list get no CORS headers at all, and the browser blocks them.
"""

from __future__ import annotations

from aiohttp import web

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


def cors_preflight(request: web.Request, origin: str, allowed: tuple[str, ...]) -> web.Response | None:
    """The answer to a preflight from an allowed origin for a path we serve; None for any other request."""
    if not origin_allowed(origin, allowed) or not _is_preflight(request):
        return None
    methods = _methods_of_path(request)
    if methods is None:
        return None
    preflight = web.Response(status=204)
    _allow(preflight, origin)
    preflight.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
    preflight.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    preflight.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return preflight


def cors_decorate(
    target: web.StreamResponse | web.HTTPException, origin: str, allowed: tuple[str, ...]
) -> None:
    """The CORS headers of any answer (errors and redirects included) to a request that sent ``origin``."""
    if origin_allowed(origin, allowed):
        _allow(target, origin)
    else:
        _add_vary_origin(target)  # the answer differs by Origin: caches must not share it
