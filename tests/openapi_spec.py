"""A hand-written OpenAPI 3.1 description of the admin API, for schemathesis until the service serves
its own ``/openapi.json`` (the operations work). Bodies come from the same pydantic models the handlers
use, so a handler answering something else than its model is caught.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api import schemas

_MODELS: list[type[BaseModel]] = [
    schemas.ErrorResponse,
    schemas.StatusResponse,
    schemas.TriggerResponse,
    schemas.AlreadyRunningResponse,
    schemas.CancelResponse,
    schemas.RunListResponse,
    schemas.RunDetailResponse,
    schemas.SessionRequest,
    schemas.SessionResponse,
    schemas.MessageResponse,
    schemas.HealthResponse,
    schemas.ReadyResponse,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _answer(model: type[BaseModel], description: str = "") -> dict[str, Any]:
    return {
        "description": description or model.__name__,
        "content": {"application/json": {"schema": _ref(model)}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _answer(schemas.ErrorResponse, "error") for code in codes}


def build_spec() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "serialization") for model in _MODELS], ref_template="#/components/schemas/{model}"
    )
    components = top["$defs"]
    admin: list[dict[str, list[str]]] = [{"bearer": []}]
    int_param = {"type": "integer"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "product-sync (hand-written for tests)", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/admin/sync/trigger": {
                "post": {
                    "security": admin,
                    "responses": {
                        "200": _answer(schemas.TriggerResponse),
                        "409": _answer(schemas.AlreadyRunningResponse),
                        **_errors(401, 403, 500),
                    },
                }
            },
            "/admin/sync/status": {
                "get": {
                    "security": admin,
                    "responses": {"200": _answer(schemas.StatusResponse), **_errors(401)},
                }
            },
            "/admin/sync/cancel": {
                "post": {
                    "security": admin,
                    "responses": {"200": _answer(schemas.CancelResponse), **_errors(401, 403, 409)},
                }
            },
            "/admin/sync/runs": {
                "get": {
                    "security": admin,
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": int_param},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"enum": ["running", "success", "error", "cancelled"]},
                        },
                    ],
                    "responses": {"200": _answer(schemas.RunListResponse), **_errors(400, 401)},
                }
            },
            "/admin/sync/runs/{runId}": {
                "get": {
                    "security": admin,
                    "parameters": [
                        {"name": "runId", "in": "path", "required": True, "schema": int_param},
                        {"name": "errorsLimit", "in": "query", "schema": int_param},
                        {"name": "errorsCursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": _answer(schemas.RunDetailResponse), **_errors(400, 401, 404)},
                }
            },
            "/admin/session": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(schemas.SessionRequest)}},
                    },
                    "responses": {"200": _answer(schemas.SessionResponse), **_errors(400, 401, 403, 413)},
                },
                "get": {
                    "security": admin,
                    "responses": {"200": _answer(schemas.SessionResponse), **_errors(401, 404)},
                },
                "delete": {
                    "security": admin,
                    "responses": {"200": _answer(schemas.MessageResponse), **_errors(401, 403)},
                },
            },
            "/health": {"get": {"responses": {"200": _answer(schemas.HealthResponse)}}},
            "/ready": {"get": {"responses": {"200": _answer(schemas.ReadyResponse), **_errors(503)}}},
        },
    }
