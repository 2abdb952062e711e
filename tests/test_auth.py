"""Bearer tokens: who may call the admin API, and what the ledger remembers about it."""

from __future__ import annotations

import sqlite3

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.settings import Settings
from tests.conftest import ADMIN_TOKEN, OTHER_TOKEN, finished, wait_for_status

Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Token {ADMIN_TOKEN}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}X"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": "Bearer " + "a" * 4000},
    ],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/admin/sync/status"), ("POST", "/admin/sync/trigger")])
async def test_refused_without_a_valid_bearer_token(
    client: Client, headers: dict[str, str], method: str, path: str
) -> None:
    response = await client.request(method, path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await response.json() == {"status": "error", "message": "Unauthorized"}


async def test_token_in_query_string_is_ignored(client: Client) -> None:
    response = await client.get(f"/admin/sync/status?token={ADMIN_TOKEN}&access_token={ADMIN_TOKEN}")
    assert response.status == 401


async def test_right_token_is_accepted_and_its_name_is_recorded(client: Client, settings: Settings) -> None:
    response = await client.post("/admin/sync/trigger", headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert response.status == 200
    run_id = (await response.json())["data"]["runId"]
    data = await wait_for_status(client, finished)
    assert data["triggeredBy"] == "ci"
    with sqlite3.connect(settings.db_path) as conn:
        (triggered_by,) = conn.execute("SELECT triggered_by FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert triggered_by == "ci"
        # The token itself is nowhere in the database.
        dump = "\n".join(conn.iterdump())
    assert OTHER_TOKEN not in dump and ADMIN_TOKEN not in dump


async def test_bearer_scheme_is_case_insensitive(client: Client) -> None:
    response = await client.get("/admin/sync/status", headers={"Authorization": f"bearer {ADMIN_TOKEN}"})
    assert response.status == 200


async def test_probes_need_no_token(client: Client) -> None:
    assert (await client.get("/health")).status == 200
    assert (await client.get("/ready")).status == 200
