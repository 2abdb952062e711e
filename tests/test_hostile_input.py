"""Hostile requests and hostile upstream data: refused cleanly in the JSON shape, or stored faithfully.

Extends test_auth.py (the basic 401 cases) with padded and odd headers, a timing comparison, tokens
in logs of a real process, bodies, methods, paths, and catalog data meant to break SQL, HTML or Unicode.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from tests.conftest import (
    ADMIN_TOKEN,
    AUTH,
    AiohttpClient,
    AiohttpServer,
    make_settings,
    sync_once,
)
from tests.faults import FaultUpstream
from tests.service_process import ServiceProcess
from tests.upstream import FeedControl, dummyjson_app, make_product

Client = TestClient[web.Request, web.Application]
UNAUTHORIZED = {"status": "error", "message": "Unauthorized"}


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer " + "a" * 9_000,
        "Bearer " + ADMIN_TOKEN + "z" * 20_000,  # a padded real token, under the 32 KiB header limit
        "Bearer " + ADMIN_TOKEN + "\t" + ADMIN_TOKEN,
        "Bearer " + ADMIN_TOKEN + "," + ADMIN_TOKEN,
        "Bearer " + ADMIN_TOKEN.upper(),
        "Bearer " + ADMIN_TOKEN[1:],
        "Bearer " + "é" * 10,
        "Bearer\t" + ADMIN_TOKEN,
        "Digest username=admin",
        "Bearer" + ADMIN_TOKEN,
        "=?utf-8?b?" + ADMIN_TOKEN + "?=",
        ADMIN_TOKEN,
    ],
    ids=lambda value: f"{value[:12]!r}..len{len(value)}",
)
async def test_odd_and_padded_authorization_headers_get_the_json_401(
    client: Client, authorization: str
) -> None:
    response = await client.get("/admin/sync/status", headers={"Authorization": authorization})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await response.json() == UNAUTHORIZED


async def test_token_as_a_cookie_or_in_the_query_or_body_is_not_a_credential(client: Client) -> None:
    for response in [
        await client.get("/admin/sync/status", cookies={"sync_session": ADMIN_TOKEN}),
        await client.get(f"/admin/sync/status?access_token={ADMIN_TOKEN}&token={ADMIN_TOKEN}"),
        await client.post("/admin/sync/trigger", json={"token": ADMIN_TOKEN}),
        await client.post(f"/admin/sync/trigger?Authorization=Bearer%20{ADMIN_TOKEN}"),
    ]:
        assert response.status == 401
        assert await response.json() == UNAUTHORIZED


async def test_a_wrong_token_takes_as_long_as_an_almost_right_one(client: Client) -> None:
    """Medians over a few hundred interleaved requests; only a loose bound (this is a shared machine)."""
    almost = {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}X"}  # right length, last character wrong
    wrong = {"Authorization": "Bearer x"}  # short and wrong from the first character
    timings: dict[str, list[float]] = {"almost": [], "wrong": []}
    for _ in range(300):
        for name, headers in (("almost", almost), ("wrong", wrong)):
            started = time.perf_counter()
            response = await client.get("/admin/sync/status", headers=headers)
            await response.read()
            timings[name].append(time.perf_counter() - started)
            assert response.status == 401
    almost_ms = statistics.median(timings["almost"]) * 1000
    wrong_ms = statistics.median(timings["wrong"]) * 1000
    # HMAC compare is constant-time for equal lengths; what is left must drown in request noise.
    assert abs(almost_ms - wrong_ms) < 0.5 + 0.25 * min(almost_ms, wrong_ms), (almost_ms, wrong_ms)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        (
            "POST",
            "/admin/session",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
        ),
        ("POST", "/admin/session", {"json": {"token": 42}}, 400),
        ("POST", "/admin/session", {"json": ["token"]}, 400),
        ("POST", "/admin/session", {"json": {"token": "x" * 5000}}, 400),
        ("POST", "/admin/session", {"data": "\udcff".encode("utf-8", "surrogateescape")}, 400),
        ("POST", "/admin/session", {"data": b"x" * 70_000}, 413),
        ("PATCH", "/admin/sync/trigger", {"headers": AUTH}, 405),
        ("DELETE", "/admin/sync/status", {"headers": AUTH}, 405),
        ("PUT", "/health", {}, 405),
        ("GET", "/admin/sync/runs/999999", {"headers": AUTH}, 404),
        ("GET", "/admin/sync/runs/-1", {"headers": AUTH}, 404),
        ("GET", "/admin/sync/runs/abc", {"headers": AUTH}, 404),
        ("GET", "/admin/sync/runs?limit=-5", {"headers": AUTH}, 400),
        ("GET", "/admin/sync/runs?limit=abc", {"headers": AUTH}, 400),
        ("GET", "/admin/sync/runs?cursor=%00%ff", {"headers": AUTH}, 400),
        ("GET", "/nope", {}, 404),
        ("GET", "/admin/nope", {"headers": AUTH}, 404),
    ],
)
async def test_malformed_requests_get_a_clear_4xx_in_the_json_shape(
    client: Client, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = await client.request(method, path, **kwargs)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == "error" and isinstance(body["message"], str) and body["message"]


async def test_a_chunked_body_over_the_limit_is_413(client: Client) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 8192

    response = await client.post(
        "/admin/session", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["status"] == "error"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/static/../../../../etc/passwd",
        "/admin/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/admin/static/..%2f..%2f..%2fetc%2fpasswd",
        "/admin/static/%252e%252e/%252e%252e/etc/passwd",
        "/admin/static/....//....//etc/passwd",
        "/admin/static/..\\..\\..\\etc\\passwd",
        "/admin/static/%00../../etc/passwd",
        "/admin/static//etc/passwd",
        "/admin/static/../../service/settings.py",
        "/admin/%2e%2e/%2e%2e/etc/passwd",
    ],
)
async def test_path_traversal_against_the_static_route_never_serves_a_file(client: Client, path: str) -> None:
    response = await client.get(path)
    text = await response.text()
    assert 400 <= response.status < 500, (response.status, text[:200])
    assert response.content_type == "application/json"
    assert "root:" not in text and "class Settings" not in text


# --- hostile upstream data ------------------------------------------------------------------------

HOSTILE_TITLES = [
    "Robert'); DROP TABLE products;--",
    "1' OR '1'='1",
    '"; DELETE FROM runs WHERE "a"="a',
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "Zalgo Z̷̢̛̩͎a̸̡̛l̶g̷o̴ text",
    "😀👩‍👩‍👧‍👦🏳️‍🌈 emoji",
    "مرحبا بالعالم RTL \u202etxt.exe",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "NUL inside \u0000 the title",
    "\U0010ffff last code point",
    "ﬁ ligature and Å vs Å",
    "%s %d {0} ${jndi:ldap://127.0.0.1/x}",
    "CON",
    "a" * 10_000,
]


async def test_hostile_catalog_data_is_stored_faithfully_or_rejected_per_item(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    products = [make_product(i, title=title) for i, title in enumerate(HOSTILE_TITLES, start=1)]
    big = len(products) + 1
    products.append(make_product(big, description="<p>" + "ü" * 499_990 + "</p>"))  # ~1 MB of UTF-8
    products.append(make_product(big + 1, title="duplicate of 1"))
    products[-1]["id"] = 1  # the same id again within one feed: an item error, not a second write
    products.append(make_product(big + 2, category="'; DROP TABLE categories;--", brand="<b>brand</b>"))
    products.append(make_product(big + 3, title="   "))  # blank after stripping: rejected with a reason
    products.append(make_product(big + 4, tags=["<x>", "'--", "😀"], sku="' OR 1=1 --"))
    feed = FeedControl(products=products)
    server = await aiohttp_server(dummyjson_app(feed), host="127.0.0.1")
    settings = make_settings(tmp_path, source_url=str(server.make_url("/products")), page_size=7)
    client = await aiohttp_client(create_app(settings))
    data = await sync_once(client)
    assert data["lastStatus"] == "success", data
    assert data["stats"]["errors"] == 2 and data["stats"]["created"] == len(products) - 2

    with sqlite3.connect(settings.db_path) as conn:
        stored = {
            ext: (title, description, brand, sku, tags, category)
            for ext, title, description, brand, sku, tags, category in conn.execute(
                "SELECT p.external_id, p.title, p.description, p.brand, p.sku, p.tags, c.name"
                " FROM products p JOIN categories c ON c.id = p.category_id"
            )
        }
        reasons = [row[0] for row in conn.execute("SELECT reason FROM run_errors ORDER BY position")]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"products", "runs", "categories", "run_errors"} <= tables
    for i, title in enumerate(HOSTILE_TITLES, start=1):
        assert stored[str(i)][0] == title.strip(), i
    assert stored[str(big)][1] == products[big - 1]["description"]
    assert stored[str(big + 2)][5] == "'; DROP TABLE categories;--"
    assert stored[str(big + 2)][2] == "<b>brand</b>"
    assert stored[str(big + 4)][3] == "' OR 1=1 --"
    assert stored[str(big + 4)][4] == '["<x>","\'--","😀"]'
    assert reasons == [
        "duplicate id: already at position 0",
        "title: String should have at least 1 character",
    ]

    # The API hands the same strings back as JSON, escaped, never interpreted.
    response = await client.get(f"/admin/sync/runs/{data['runId']}", headers=AUTH)
    assert response.status == 200
    assert response.content_type == "application/json"


# --- a real process: logs and the protocol-level limit ----------------------------------------------


async def test_no_token_reaches_the_log_of_a_real_process(tmp_path: Path) -> None:
    upstream = FaultUpstream([make_product(i) for i in range(1, 20)]).start()
    service = ServiceProcess(
        tmp_path / "sync.db", upstream.products_url, tmp_path / "service.log", SYNC_LOG_LEVEL="DEBUG"
    )
    almost = ADMIN_TOKEN[:-1] + "Q"
    attempts = [
        ({"Authorization": f"Bearer {almost}"}, 401),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}" + "z" * 40_000}, 400),  # past aiohttp's header limit
        ({"X-Token": ADMIN_TOKEN, "Cookie": f"sync_session={ADMIN_TOKEN}"}, 401),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 200),
    ]
    try:
        await service.start()
        async with aiohttp.ClientSession() as session:
            for headers, expected in attempts:
                url = f"{service.base_url}/admin/sync/status?token={ADMIN_TOKEN}"
                async with session.get(url, headers=headers) as response:
                    assert response.status == expected, headers.keys()
        code, _ = await service.request("POST", "/admin/sync/trigger")
        assert code == 200
        await service.wait_status(lambda d: not d["isRunning"])
    finally:
        await service.stop()
        upstream.stop()
    log = service.log_text()
    assert "Error handling request" in log  # the oversized header was logged, without its bytes
    for secret in (ADMIN_TOKEN, almost):
        assert secret[:8] not in log and secret[-8:] not in log


@pytest.mark.parametrize("run_id", ["420124084146168290248491008", str(2**63), "0", "-5", "1e3"])
async def test_run_ids_out_of_range_are_404_not_500(client: Client, run_id: str) -> None:
    """Found by schemathesis: an id past SQLite's 64-bit INTEGER overflowed in the driver (500)."""
    response = await client.get(f"/admin/sync/runs/{run_id}", headers=AUTH)
    assert response.status == 404
    assert await response.json() == {"status": "error", "message": "Run not found"}
