"""Every answer is JSON; every error has the contract's shape ``{"status":"error","message":…}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from service.api.schemas import ErrorResponse
from service.database.errors import STORAGE_FAULTS

log = logging.getLogger(__name__)

# What a locked, full, read-only, deleted or corrupt database raises through the ledger.
STORAGE_ERRORS = STORAGE_FAULTS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REASONS = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    500: "Internal server error",
}


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Bytes, not str: aiohttp sends a bytes body with the headers as is, where a str is wrapped in a
    # payload object and encoded on every answer.
    body = model.__pydantic_serializer__.to_json(model)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(ErrorResponse(message=message), status=status, headers=headers)


class ApiError(Exception):
    """Raised by handlers for an answer in the error shape; carries its HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def http_error_response(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, wrong method, unreadable request) in the contract's shape."""
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "www-authenticate"}}
    message = exc.text if exc.text and exc.content_type == "text/plain" else None
    if not message or message.startswith(f"{exc.status}:"):
        message = _REASONS.get(exc.status, exc.reason)
    return error_response(exc.status, message, headers)


def could_not(action: str, exc: BaseException) -> ApiError:
    """A failure outside the code (the database, the disk) as a 500 naming what failed and why.

    Logged in one line without a traceback: the cause is another process's lock, the disk or the file,
    and the message (SQLite's own) names it.
    """
    log.error("could not %s: %s", action, exc)
    return ApiError(500, f"Could not {action}: {exc}")
