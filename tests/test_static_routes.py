"""The admin page's routes: allow-listed files only, JSON 404s, strict security headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.api.static_routes import CONTENT_SECURITY_POLICY, STATIC_DIR, add_static_routes
from service.app import create_app
from tests.conftest import make_settings

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> Client:
    app = web.Application()
    add_static_routes(app)
    return await aiohttp_client(app)


async def test_page_is_served_with_security_headers(client: Client) -> None:
    response = await client.get("/admin/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert await response.read() == (STATIC_DIR / "index.html").read_bytes()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("admin.js", "text/javascript; charset=utf-8"), ("admin.css", "text/css; charset=utf-8")],
)
async def test_assets_are_served_with_their_type(client: Client, name: str, content_type: str) -> None:
    response = await client.get(f"/admin/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert await response.read() == (STATIC_DIR / name).read_bytes()


async def test_bare_admin_path_redirects_to_the_page(client: Client) -> None:
    response = await client.get("/admin", allow_redirects=False)
    assert response.status == 308
    assert response.headers["Location"] == "/admin/"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/static/unknown.js",
        "/admin/static/..%2Fapi%2Fstatic_routes.py",
        "/admin/static/%2e%2e%2f%2e%2e%2fsettings.py",
        "/admin/static/ADMIN.JS",
        "/admin/static/admin.js%00",
    ],
)
async def test_anything_off_the_allow_list_is_a_json_404(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    body = await response.json()
    assert body == {"status": "error", "message": "Not found"}


async def test_allow_list_matches_the_folder() -> None:
    """Every file shipped in service/static is served, and nothing else is in there."""
    on_disk = {path.name for path in STATIC_DIR.iterdir() if path.is_file()}
    assert on_disk == {"index.html", "admin.css", "admin.js"}


@pytest.mark.parametrize(
    "path", ["/admin/static/../../settings.py", "/admin/static/", "/admin/static/a/admin.js"]
)
async def test_paths_outside_the_route_match_nothing(client: Client, path: str) -> None:
    # These never reach the handler; the app's error middleware gives them the JSON shape.
    response = await client.get(path)
    assert response.status == 404
    assert b"BaseModel" not in await response.read()


@pytest.fixture
async def service_client(aiohttp_client: ClientFactory, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(make_settings(tmp_path, source_url="http://127.0.0.1:9/products")))


async def test_in_the_service_the_page_needs_no_credentials_but_the_api_does(service_client: Client) -> None:
    for path in ("/admin/", "/admin/static/admin.js", "/admin/static/admin.css"):
        response = await service_client.get(path)
        assert response.status == 200, path
    response = await service_client.get("/admin/sync/status")
    assert response.status == 401


@pytest.mark.parametrize(
    "path",
    [
        "/admin/static/unknown.js",
        "/admin/static/..%2F..%2Fsettings.py",
        "/admin/static/../../settings.py",
        "/admin/static/%2e%2e/%2e%2e/settings.py",
    ],
)
async def test_in_the_service_unknown_static_paths_are_json_404s(service_client: Client, path: str) -> None:
    response = await service_client.get(path)
    assert response.status == 404
    assert await response.json() == {"status": "error", "message": "Not found"}
