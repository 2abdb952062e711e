"""Sign-in for the admin page: a token is exchanged once for an HttpOnly session cookie."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import ValidationError

from service.api.auth import SESSION_COOKIE, is_same_origin, unauthorized
from service.api.errors import ApiError, json_response
from service.api.keys import AUTHENTICATOR, SETTINGS
from service.api.schemas import MessageResponse, SessionData, SessionRequest, SessionResponse
from service.api.sync_routes import principal_of
from service.support.timeutil import to_iso

routes = web.RouteTableDef()


def _expires_iso(expires_at: float) -> str:
    return to_iso(datetime.fromtimestamp(expires_at, UTC))


@routes.post("/admin/session")
async def sign_in(request: web.Request) -> web.Response:
    if "Origin" in request.headers and not is_same_origin(request):
        raise ApiError(403, "Cross-origin request refused")
    try:
        body = SessionRequest.model_validate_json(await request.read())
    except ValidationError:
        raise ApiError(400, 'Expected a JSON body {"token": "..."}') from None
    authenticator = request.app[AUTHENTICATOR]
    name = authenticator.token_name(body.token)
    if name is None:
        raise unauthorized()
    cookie, expires_at = authenticator.issue_session(name)
    response = json_response(
        SessionResponse(data=SessionData(tokenName=name, expiresAt=_expires_iso(expires_at)))
    )
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=request.app[SETTINGS].session_ttl_s,
        path="/admin",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


@routes.get("/admin/session")
async def who_am_i(request: web.Request) -> web.Response:
    principal = principal_of(request)
    if principal.expires_at is None:
        raise ApiError(404, "No session: authenticated by bearer token")
    return json_response(
        SessionResponse(
            data=SessionData(tokenName=principal.token_name, expiresAt=_expires_iso(principal.expires_at))
        )
    )


@routes.delete("/admin/session")
async def sign_out(request: web.Request) -> web.Response:
    response = json_response(MessageResponse(message="Signed out"))
    response.del_cookie(SESSION_COOKIE, path="/admin")
    return response
