"""The OpenAPI 3.1 document, generated from the pydantic models the handlers answer with.

Each operation below names its response models; their JSON Schemas come from pydantic, so the document
cannot drift from what handlers send. Only operations whose route is registered in the app are
included, and the tests fail when a registered route has no entry here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service.api.schemas import (
    AlreadyRunningResponse,
    CancelResponse,
    ErrorResponse,
    HealthResponse,
    MessageResponse,
    ReadyResponse,
    RunDetailResponse,
    RunListResponse,
    SessionRequest,
    SessionResponse,
    StatusResponse,
    TriggerRequest,
    TriggerResponse,
)
from service.settings import Settings

REF_TEMPLATE = "#/components/schemas/{model}"
JSON = "application/json"
Refs = Mapping[Any, Mapping[str, Any]]  # model -> {"$ref": ...}, as pydantic returns it
ADMIN_AUTH: tuple[Mapping[str, list[str]], ...] = ({"bearerAuth": []}, {"sessionCookie": []})


@dataclass(frozen=True)
class Json:
    model: type[BaseModel]
    description: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Body:
    """A non-JSON answer (page, metrics text, redirect)."""

    media_types: tuple[str, ...]  # empty: no body
    description: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ref:
    """One of the shared error answers in ``components.responses``."""

    name: str


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" or "path"
    schema: Mapping[str, Any]
    description: str


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the aiohttp route template, which is also OpenAPI's path template
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, Json | Body | Ref]
    security: tuple[Mapping[str, list[str]], ...] = ()
    parameters: Sequence[Param] = ()
    request_body: type[BaseModel] | None = None
    description: str = ""
    request_body_required: bool = True


# Shared error answers: every one has the contract's shape {"status": "error", "message": "..."}.
ERROR_RESPONSES: Mapping[str, tuple[int, str]] = {
    "BadRequest": (400, "A query parameter or the body is invalid"),
    "Unauthorized": (401, "No valid bearer token or session cookie; carries WWW-Authenticate: Bearer"),
    "Forbidden": (403, "A cookie-authenticated request changing state did not come from this origin"),
    "NotFound": (404, "No such resource"),
    "MethodNotAllowed": (405, "The path exists but not with this method; Allow lists the methods"),
    "Conflict": (409, "The request conflicts with the sync's state"),
    "PayloadTooLarge": (413, "The request body is larger than max_request_body_bytes"),
    "InternalError": (500, "An unexpected error; details are in the service log, never in the answer"),
    "Unavailable": (503, "The database is unreachable or not migrated"),
}

_ADMIN_ERRORS: Mapping[int, Ref] = {401: Ref("Unauthorized"), 500: Ref("InternalError")}
_WRITE_ERRORS: Mapping[int, Ref] = {**_ADMIN_ERRORS, 403: Ref("Forbidden"), 413: Ref("PayloadTooLarge")}

_PAGE_LIMIT = {"type": "integer", "minimum": 1, "maximum": 200}
_CURSOR = {"type": "string", "pattern": "^[0-9]+$"}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/admin/sync/trigger",
        "triggerSync",
        "Start a sync run in the background",
        "sync",
        {
            200: Json(TriggerResponse, "The run started; poll checkStatusAt"),
            400: Ref("BadRequest"),
            409: Json(AlreadyRunningResponse, "A run is in progress (in any process on this database)"),
            **_WRITE_ERRORS,
        },
        ADMIN_AUTH,
        request_body=TriggerRequest,
        request_body_required=False,
        description='No body starts a sync; {"dryRun": true} starts a dry run, which writes nothing.',
    ),
    Operation(
        "GET",
        "/admin/sync/status",
        "getSyncStatus",
        "Status of the newest run (idle when none)",
        "sync",
        {200: Json(StatusResponse, "The newest run as the contract's status object"), **_ADMIN_ERRORS},
        ADMIN_AUTH,
    ),
    Operation(
        "POST",
        "/admin/sync/cancel",
        "cancelSync",
        "Ask the running sync to stop",
        "sync",
        {
            200: Json(CancelResponse, "Cancellation requested; the run ends as cancelled within a second"),
            409: Json(ErrorResponse, "No sync is running"),
            **_WRITE_ERRORS,
        },
        ADMIN_AUTH,
    ),
    Operation(
        "GET",
        "/admin/sync/runs",
        "listRuns",
        "Run history, newest first, cursor-paged",
        "audit",
        {
            200: Json(RunListResponse, "One page of runs; nextCursor is null on the last page"),
            400: Ref("BadRequest"),
            **_ADMIN_ERRORS,
        },
        ADMIN_AUTH,
        (
            Param("limit", "query", {**_PAGE_LIMIT, "default": 20}, "Runs per page"),
            Param("cursor", "query", _CURSOR, "nextCursor of the previous page"),
            Param(
                "status",
                "query",
                {"type": "string", "enum": ["running", "success", "error", "cancelled"]},
                "Only runs with this status",
            ),
        ),
    ),
    Operation(
        "GET",
        "/admin/sync/runs/{run_id}",
        "getRun",
        "One run with its item errors, cursor-paged",
        "audit",
        {
            200: Json(RunDetailResponse, "The run and one page of its item errors, in feed order"),
            400: Ref("BadRequest"),
            404: Ref("NotFound"),
            **_ADMIN_ERRORS,
        },
        ADMIN_AUTH,
        (
            Param("run_id", "path", {"type": "integer", "minimum": 1}, "The run's id"),
            Param("errorsLimit", "query", {**_PAGE_LIMIT, "default": 50}, "Item errors per page"),
            Param("errorsCursor", "query", _CURSOR, "nextErrorsCursor of the previous page"),
            Param("changesLimit", "query", {**_PAGE_LIMIT, "default": 50}, "Product changes per page"),
            Param("changesCursor", "query", _CURSOR, "nextChangesCursor of the previous page"),
        ),
    ),
    Operation(
        "POST",
        "/admin/session",
        "signIn",
        "Exchange an admin token for an HttpOnly session cookie",
        "session",
        {
            200: Json(
                SessionResponse,
                "Signed in; sets the sync_session cookie",
                {"Set-Cookie": "sync_session=...; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=..."},
            ),
            400: Ref("BadRequest"),
            401: Ref("Unauthorized"),
            403: Ref("Forbidden"),
            413: Ref("PayloadTooLarge"),
            500: Ref("InternalError"),
        },
        request_body=SessionRequest,
    ),
    Operation(
        "GET",
        "/admin/session",
        "getSession",
        "Who the session cookie belongs to, and when it expires",
        "session",
        {
            200: Json(SessionResponse, "The session's token name and expiry"),
            404: Json(ErrorResponse, "Authenticated by bearer token: there is no session"),
            **_ADMIN_ERRORS,
        },
        ADMIN_AUTH,
    ),
    Operation(
        "DELETE",
        "/admin/session",
        "signOut",
        "Sign out: clear the session cookie",
        "session",
        {200: Json(MessageResponse, "Signed out"), **_WRITE_ERRORS},
        ADMIN_AUTH,
    ),
    Operation(
        "GET",
        "/admin",
        "adminPageRedirect",
        "Redirect to the admin page",
        "admin page",
        {308: Body((), "Permanent redirect to /admin/", {"Location": "/admin/"})},
    ),
    Operation(
        "GET",
        "/admin/",
        "adminPage",
        "The admin page (signing in happens on the page)",
        "admin page",
        {200: Body(("text/html",), "The page")},
    ),
    Operation(
        "GET",
        "/admin/static/{name}",
        "adminAsset",
        "The admin page's script and stylesheet",
        "admin page",
        {200: Body(("text/css", "text/javascript"), "The stylesheet or the script"), 404: Ref("NotFound")},
        parameters=(Param("name", "path", {"type": "string"}, "File name, from a fixed allow-list"),),
    ),
    Operation(
        "GET",
        "/health",
        "health",
        "Liveness: the process answers",
        "operations",
        {200: Json(HealthResponse, "Alive")},
    ),
    Operation(
        "GET",
        "/ready",
        "ready",
        "Readiness: the database is reachable and fully migrated",
        "operations",
        {200: Json(ReadyResponse, "Ready"), 503: Ref("Unavailable")},
    ),
    Operation(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics (text exposition format 0.0.4)",
        "operations",
        {200: Body(("text/plain",), "Metrics"), 500: Ref("InternalError")},
    ),
    Operation(
        "GET",
        "/openapi.json",
        "openapi",
        "This document",
        "operations",
        {200: Body((JSON,), "The OpenAPI 3.1 document")},
    ),
)


def _response_models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for operation in OPERATIONS:
        for answer in operation.responses.values():
            if isinstance(answer, Json) and (answer.model, "serialization") not in models:
                models.append((answer.model, "serialization"))
        if operation.request_body is not None:
            models.append((operation.request_body, "validation"))
    return models


def _content(media_type: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {media_type: {"schema": dict(schema)}}


def _response(answer: Json | Body | Ref, refs: Refs) -> dict[str, Any]:
    if isinstance(answer, Ref):
        return {"$ref": f"#/components/responses/{answer.name}"}
    doc: dict[str, Any] = {"description": answer.description}
    if isinstance(answer, Json):
        doc["content"] = _content(JSON, refs[answer.model])
    elif answer.media_types:
        doc["content"] = {
            media_type: {"schema": {"type": "object"} if media_type == JSON else {"type": "string"}}
            for media_type in answer.media_types
        }
    if answer.headers:
        doc["headers"] = {
            name: {"description": example, "schema": {"type": "string"}}
            for name, example in answer.headers.items()
        }
    return doc


def _operation(operation: Operation, settings: Settings, refs: Refs) -> dict[str, Any]:
    responses = dict(operation.responses)
    security = operation.security
    if operation.path == "/metrics" and settings.metrics_require_auth:
        security = ADMIN_AUTH
        responses[401] = Ref("Unauthorized")
    doc: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": [dict(s) for s in security],
        "responses": {str(code): _response(answer, refs) for code, answer in sorted(responses.items())},
    }
    if operation.description:
        doc["description"] = operation.description
    if operation.parameters:
        doc["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.where == "path",
                "description": p.description,
                "schema": dict(p.schema),
            }
            for p in operation.parameters
        ]
    if operation.request_body is not None:
        doc["requestBody"] = {
            "required": operation.request_body_required,
            "content": _content(JSON, refs[operation.request_body]),
        }
    return doc


def registered_operations(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route in the app; HEAD is implied by GET and left out."""
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return found


def build_document(app: web.Application, settings: Settings) -> dict[str, Any]:
    key_map, definitions = models_json_schema(_response_models(), ref_template=REF_TEMPLATE)
    refs = {model: ref for (model, _mode), ref in key_map.items()}
    registered = registered_operations(app)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        if (operation.method, operation.path) in registered:
            item = paths.setdefault(operation.path, {})
            item[operation.method.lower()] = _operation(operation, settings, refs)
    error_ref = dict(refs[ErrorResponse])
    challenge = {"WWW-Authenticate": {"schema": {"type": "string", "pattern": "^Bearer "}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "product-sync",
            "version": _package_version(),
            "description": (
                "Pulls a product catalog from an upstream feed into SQLite, triggered over HTTP; every run "
                "is recorded in a ledger. Every error answer has the shape "
                '{"status":"error","message":"..."}; a method a path does not list gets 405 '
                "(components.responses.MethodNotAllowed) with an Allow header."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name} for name in dict.fromkeys(op.tag for op in OPERATIONS)],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin token (SYNC_ADMIN_TOKEN / SYNC_ADMIN_TOKENS)",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "sync_session",
                    "description": "Set by POST /admin/session; same-origin only for state-changing requests",
                },
            },
            "responses": {
                name: {
                    "description": description,
                    "content": _content(JSON, error_ref),
                    **({"headers": challenge} if status == 401 else {}),
                }
                for name, (status, description) in ERROR_RESPONSES.items()
            },
        },
    }


def _package_version() -> str:
    try:
        return version("product-sync")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"
