"""CORS for an admin front end on another origin: allowed origins only, bearer only, never credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from tests.conftest import ADMIN_TOKEN, AUTH, AiohttpClient, make_settings
from tests.jobs import ScriptedJob

Client = TestClient[web.Request, web.Application]
FRONT_END = "https://admin.example"
STRANGER = "https://evil.example"


def preflight(method: str, origin: str = FRONT_END) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, tmp_path: Path) -> Client:
    settings = make_settings(tmp_path, source_url="http://127.0.0.1:9/", cors_origins=(FRONT_END,))
    return await aiohttp_client(create_app(settings, job=ScriptedJob()))


def cors_headers(response: web.StreamResponse | object) -> dict[str, str]:
    headers = getattr(response, "headers", {})
    return {k: v for k, v in headers.items() if k.lower().startswith("access-control-")}


async def test_preflight_from_an_allowed_origin(client: Client) -> None:
    response = await client.options("/admin/sync/trigger", headers=preflight("POST"))
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]

    status = await client.options("/admin/sync/status", headers=preflight("GET"))
    assert status.status == 204
    assert set(status.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "HEAD"}
    detail = await client.options("/admin/sync/runs/7", headers=preflight("GET"))
    assert detail.status == 204


async def test_actual_requests_from_an_allowed_origin_carry_the_headers(client: Client) -> None:
    response = await client.get("/admin/sync/status", headers={**AUTH, "Origin": FRONT_END})
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    trigger = await client.post("/admin/sync/trigger", headers={**AUTH, "Origin": FRONT_END})
    assert trigger.status == 200
    assert trigger.headers["Access-Control-Allow-Origin"] == FRONT_END
    # Errors too, so the front end can read the message.
    denied = await client.get("/admin/sync/status", headers={"Origin": FRONT_END})
    assert denied.status == 401
    assert denied.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert (await denied.json())["status"] == "error"


async def test_other_origins_get_no_cors_headers(client: Client) -> None:
    response = await client.options("/admin/sync/trigger", headers=preflight("POST", STRANGER))
    assert cors_headers(response) == {}
    assert response.status == 405
    assert (await response.json())["status"] == "error"
    actual = await client.get("/admin/sync/status", headers={**AUTH, "Origin": STRANGER})
    assert actual.status == 200  # the server answers; the browser withholds it from the page
    assert cors_headers(actual) == {}
    assert "Origin" in actual.headers["Vary"]


async def test_preflight_for_an_unknown_path_is_not_approved(client: Client) -> None:
    response = await client.options("/admin/nothing/here", headers=preflight("GET"))
    assert response.status == 404
    assert (await response.json())["status"] == "error"
    assert "Access-Control-Allow-Methods" not in response.headers


async def test_session_cookie_is_not_accepted_cross_origin_for_writes(client: Client) -> None:
    sign_in = await client.post("/admin/session", json={"token": ADMIN_TOKEN})
    assert sign_in.status == 200
    response = await client.post(
        "/admin/sync/trigger", headers={"Origin": FRONT_END, "Sec-Fetch-Site": "cross-site"}
    )
    assert response.status == 403
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_no_cors_when_no_origins_are_configured(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await aiohttp_client(
        create_app(make_settings(tmp_path, source_url="http://127.0.0.1:9/"), job=ScriptedJob())
    )
    response = await client.options("/admin/sync/trigger", headers=preflight("POST"))
    assert response.status == 405 and cors_headers(response) == {}
    actual = await client.get("/admin/sync/status", headers={**AUTH, "Origin": FRONT_END})
    assert actual.status == 200 and cors_headers(actual) == {}
