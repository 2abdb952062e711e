"""Admin authentication: a bearer token, or a session cookie obtained with one.

Tokens are compared in constant time and never logged. The session cookie is stateless: it names the
token and an expiry, signed with a key derived from that token, so rotating a token ends its sessions,
and any process sharing the configuration accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from aiohttp import web
from pydantic import SecretStr

from service.api.errors import ApiError

SESSION_COOKIE = "sync_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="product-sync"'}


@dataclass(frozen=True)
class Principal:
    token_name: str
    via: str  # "bearer" or "session"
    expires_at: float | None = None


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", _UNAUTHORIZED_HEADERS)


class Authenticator:
    def __init__(self, tokens: dict[str, SecretStr], session_ttl_s: int) -> None:
        if not tokens:
            raise ValueError("at least one admin token is required")
        self._tokens = {name: secret.get_secret_value().encode() for name, secret in tokens.items()}
        # Immutable, so one per token serves every request (a frozen dataclass is slow to build).
        self._bearers = {name: Principal(name, "bearer") for name in tokens}
        self._session_ttl_s = session_ttl_s

    def token_name(self, presented: str) -> str | None:
        """The name of the token presented, checking every token so timing reveals nothing."""
        candidate = presented.encode()
        found: str | None = None
        for name, token in self._tokens.items():
            if hmac.compare_digest(candidate, token):
                found = name
        return found

    def authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise unauthorized()
            name = self.token_name(credentials.strip())
            if name is None:
                raise unauthorized()
            return self._bearers[name]
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            principal = self.verify_session(cookie)
            if principal is not None:
                if request.method not in _SAFE_METHODS and not is_same_origin(request):
                    # A cookie rides along on cross-site requests; only our own pages may change state.
                    raise ApiError(403, "Cross-origin request refused")
                return principal
        raise unauthorized()

    # --- sessions ----------------------------------------------------------------------------

    def _signature(self, name: str, payload: bytes) -> bytes:
        key = hashlib.sha256(b"product-sync session\x00" + self._tokens[name]).digest()
        return hmac.new(key, payload, hashlib.sha256).digest()

    def issue_session(self, name: str, now: float | None = None) -> tuple[str, float]:
        expires_at = (now if now is not None else time.time()) + self._session_ttl_s
        payload = f"{name}\x00{int(expires_at)}".encode()
        cookie = _b64(payload) + "." + _b64(self._signature(name, payload))
        return cookie, float(int(expires_at))

    def verify_session(self, cookie: str, now: float | None = None) -> Principal | None:
        try:
            payload_part, signature_part = cookie.split(".", 1)
            payload = _unb64(payload_part)
            signature = _unb64(signature_part)
            name, expires_text = payload.decode().split("\x00", 1)
            expires_at = float(int(expires_text))
        except (ValueError, UnicodeDecodeError):
            return None
        if name not in self._tokens or not hmac.compare_digest(signature, self._signature(name, payload)):
            return None
        if expires_at <= (now if now is not None else time.time()):
            return None
        return Principal(name, "session", expires_at)


def is_same_origin(request: web.Request) -> bool:
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin == f"{request.scheme}://{request.host}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
