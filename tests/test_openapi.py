"""GET /openapi.json: a valid OpenAPI 3.1 document covering every route, and real answers match it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from service.api.keys import RUNNER
from service.api.openapi import registered_operations
from service.app import create_app
from service.domain.outcomes import BatchCounts
from tests.conftest import ADMIN_TOKEN, AUTH, AiohttpClient, make_settings
from tests.jobs import ScriptedJob

Client = TestClient[web.Request, web.Application]
ERROR_STATUSES = {401, 404, 405, 409, 413, 500}


@pytest.fixture
def job() -> ScriptedJob:
    return ScriptedJob(counts=BatchCounts(created=2, errors=1, processed=3, total=3), item_errors=1)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, tmp_path: Path, job: ScriptedJob) -> Client:
    settings = make_settings(tmp_path, source_url="http://127.0.0.1:9/", max_request_body_bytes=2048)
    return await aiohttp_client(create_app(settings, job=job))


async def document(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    doc: dict[str, Any] = await response.json()
    return doc


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


class Checker:
    """Validates real answers against the document and remembers which (method, path, status) it saw."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, int]] = set()

    async def check(self, response: Any, method: str, template: str) -> dict[str, Any] | None:
        operation = self.doc["paths"][template][method.lower()]
        documented = operation["responses"]
        assert str(response.status) in documented, (method, template, response.status, await response.text())
        answer = resolve(self.doc, documented[str(response.status)])
        self.seen.add((method, template, response.status))
        content = answer.get("content")
        if content is None:
            return None
        media_type = response.headers["Content-Type"].split(";")[0]
        assert media_type in content, (method, template, media_type)
        if media_type != "application/json":
            return None
        body: dict[str, Any] = await response.json()
        schema = {**content[media_type]["schema"], "components": self.doc["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{method} {template} {response.status}: {errors[0].message}\n{body}"
        return body


async def test_document_is_valid_openapi_31(client: Client) -> None:
    doc = await document(client)
    validate_spec(doc)
    assert doc["openapi"].startswith("3.1")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["sessionCookie"]["in"] == "cookie" and schemes["sessionCookie"]["name"] == "sync_session"
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    statuses = set()
    for name, response in doc["components"]["responses"].items():
        assert response["content"]["application/json"]["schema"] == error_ref, name
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            for code, response in operation["responses"].items():
                statuses.add(int(code))
                if int(code) >= 400:
                    schema = resolve(doc, response)["content"]["application/json"]["schema"]
                    assert resolve(doc, schema)["properties"]["status"]["const"] == "error"
    # 405 applies to any method a path does not list, so it lives in components.responses only.
    assert {code for code in statuses if code >= 400} | {405} >= ERROR_STATUSES
    assert "MethodNotAllowed" in doc["components"]["responses"]


async def test_every_registered_route_is_documented(client: Client) -> None:
    doc = await document(client)
    registered = registered_operations(client.app)
    assert len(registered) >= 12
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert registered == documented
    # HEAD is implied by GET; nothing else may be left out.
    every_route = {(r.method, r.resource.canonical) for r in client.app.router.routes() if r.resource}
    assert {(m, p) for m, p in every_route if m != "HEAD"} <= documented


async def test_admin_operations_declare_security_and_runs_parameters(client: Client) -> None:
    doc = await document(client)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            public = not path.startswith("/admin/sync") and (method, path) != ("get", "/admin/session")
            public = public and (method, path) != ("delete", "/admin/session")
            if public:
                assert operation["security"] == [], (method, path)
            else:
                assert operation["security"] == [{"bearerAuth": []}, {"sessionCookie": []}], (method, path)
                assert "401" in operation["responses"]
    runs = {p["name"]: p for p in doc["paths"]["/admin/sync/runs"]["get"]["parameters"]}
    assert set(runs) == {"limit", "cursor", "status"}
    assert runs["status"]["schema"]["enum"] == ["running", "success", "error", "cancelled"]
    assert runs["limit"]["schema"]["maximum"] == 200
    detail = {p["name"]: p for p in doc["paths"]["/admin/sync/runs/{run_id}"]["get"]["parameters"]}
    assert set(detail) == {"run_id", "errorsLimit", "errorsCursor", "changesLimit", "changesCursor"}
    assert detail["run_id"]["in"] == "path" and detail["run_id"]["required"] is True


async def test_metrics_security_follows_the_setting(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, source_url="http://127.0.0.1:9/", metrics_require_auth=True)
    client = await aiohttp_client(create_app(settings, job=ScriptedJob()))
    operation = (await document(client))["paths"]["/metrics"]["get"]
    assert operation["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]
    assert "401" in operation["responses"]


async def test_real_answers_match_the_document(client: Client, job: ScriptedJob) -> None:
    doc = await document(client)
    checker = Checker(doc)
    check = checker.check

    await check(await client.get("/health"), "GET", "/health")
    await check(await client.get("/ready"), "GET", "/ready")
    await check(await client.get("/metrics"), "GET", "/metrics")
    await check(await client.get("/openapi.json"), "GET", "/openapi.json")
    idle = await check(await client.get("/admin/sync/status", headers=AUTH), "GET", "/admin/sync/status")
    assert idle is not None and idle["data"]["lastStatus"] == "idle"
    await check(await client.get("/admin/sync/status"), "GET", "/admin/sync/status")  # 401
    await check(await client.post("/admin/sync/cancel", headers=AUTH), "POST", "/admin/sync/cancel")  # 409

    job.hold = asyncio.Event()
    started = await check(
        await client.post("/admin/sync/trigger", headers=AUTH), "POST", "/admin/sync/trigger"
    )
    assert started is not None
    await check(await client.post("/admin/sync/trigger", headers=AUTH), "POST", "/admin/sync/trigger")  # 409
    running = await check(await client.get("/admin/sync/status", headers=AUTH), "GET", "/admin/sync/status")
    assert running is not None and running["data"]["isRunning"] is True
    await check(await client.post("/admin/sync/cancel", headers=AUTH), "POST", "/admin/sync/cancel")
    await client.app[RUNNER].wait()
    job.hold = None
    await client.post("/admin/sync/trigger", headers=AUTH)
    await client.app[RUNNER].wait()
    oversized = await client.post("/admin/sync/trigger", headers=AUTH, data=b"x" * 4096)
    await check(oversized, "POST", "/admin/sync/trigger")  # 413

    listing = await check(
        await client.get("/admin/sync/runs?limit=1", headers=AUTH), "GET", "/admin/sync/runs"
    )
    assert listing is not None and listing["data"]["nextCursor"] is not None
    await check(await client.get("/admin/sync/runs?limit=0", headers=AUTH), "GET", "/admin/sync/runs")
    detail_path = "/admin/sync/runs/{run_id}"
    first_run = f"/admin/sync/runs/{started['data']['runId']}"
    detail = await check(await client.get(first_run, headers=AUTH), "GET", detail_path)
    assert detail is not None and len(detail["data"]["errors"]) == 1
    await check(await client.get("/admin/sync/runs/99", headers=AUTH), "GET", detail_path)
    await check(await client.get("/admin/sync/runs/1?errorsLimit=x", headers=AUTH), "GET", detail_path)

    await check(await client.post("/admin/session", json={"token": "wrong"}), "POST", "/admin/session")
    await check(await client.post("/admin/session", data=b"{"), "POST", "/admin/session")
    await check(await client.get("/admin/session", headers=AUTH), "GET", "/admin/session")  # 404: bearer
    signed_in = await client.post("/admin/session", json={"token": ADMIN_TOKEN})
    await check(signed_in, "POST", "/admin/session")
    assert "sync_session" in signed_in.cookies
    await check(await client.get("/admin/session"), "GET", "/admin/session")
    same_origin = {"Origin": str(client.make_url("")).rstrip("/")}
    await check(await client.delete("/admin/session", headers=same_origin), "DELETE", "/admin/session")

    not_allowed = await client.delete("/health")
    assert not_allowed.status == 405
    method_not_allowed = resolve(doc, doc["components"]["responses"]["MethodNotAllowed"])
    schema = {**method_not_allowed["content"]["application/json"]["schema"], "components": doc["components"]}
    assert not list(Draft202012Validator(schema).iter_errors(await not_allowed.json()))

    # Every documented JSON success answer of the API was exercised.
    for path, item in doc["paths"].items():
        for method in item:
            if path.startswith("/admin/sync") or path in {"/health", "/ready", "/admin/session"}:
                assert (method.upper(), path, 200) in checker.seen, (method, path)
