"""Serves the admin page: ``GET /admin/`` and a fixed allow-list under ``/admin/static/{name}``.

The files are read once when the routes are added; the request's ``name`` is only ever used as a
key into that allow-list, never joined onto a filesystem path, so no traversal is possible.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE_FILE = "index.html"

CONTENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "index.html": "text/html; charset=utf-8",
        "admin.css": "text/css; charset=utf-8",
        "admin.js": "text/javascript; charset=utf-8",
    }
)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

SECURITY_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # Revalidate every time so a new deployment's page and script are never mixed with old ones.
        "Cache-Control": "no-cache",
    }
)

NOT_FOUND_BODY = json.dumps({"status": "error", "message": "Not found"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str


def load_static_files(directory: Path = STATIC_DIR) -> Mapping[str, StaticFile]:
    """Reads every allow-listed file; a missing one is a packaging error worth failing start-up for."""
    return MappingProxyType(
        {
            name: StaticFile(body=(directory / name).read_bytes(), content_type=content_type)
            for name, content_type in CONTENT_TYPES.items()
        }
    )


def _respond(static_file: StaticFile) -> web.Response:
    response = web.Response(body=static_file.body, headers=dict(SECURITY_HEADERS))
    # Set after construction: the constructor's content_type rejects a charset parameter.
    response.headers["Content-Type"] = static_file.content_type
    return response


def _not_found() -> web.HTTPNotFound:
    return web.HTTPNotFound(text=NOT_FOUND_BODY, content_type="application/json")


def _page_handler(files: Mapping[str, StaticFile]) -> Handler:
    async def admin_page(request: web.Request) -> web.StreamResponse:
        return _respond(files[PAGE_FILE])

    return admin_page


def _asset_handler(files: Mapping[str, StaticFile]) -> Handler:
    async def admin_asset(request: web.Request) -> web.StreamResponse:
        static_file = files.get(request.match_info["name"])
        if static_file is None:
            raise _not_found()
        return _respond(static_file)

    return admin_asset


async def _redirect_to_page(request: web.Request) -> web.StreamResponse:
    # Relative links on the page resolve against "/admin/", so send "/admin" there.
    raise web.HTTPPermanentRedirect("/admin/")


def add_static_routes(app: web.Application, directory: Path = STATIC_DIR) -> None:
    files = load_static_files(directory)
    app.router.add_get("/admin", _redirect_to_page)
    app.router.add_get("/admin/", _page_handler(files))
    app.router.add_get("/admin/static/{name}", _asset_handler(files))
