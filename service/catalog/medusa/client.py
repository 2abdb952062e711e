"""The Medusa v2 Admin API over the sink's own ``aiohttp.ClientSession``, authenticated by a secret key.

Reads are retried on transient faults (the upstream's retry policy: bounded, with backoff, honouring
``Retry-After``). Batch writes are not retried here: a write whose answer was lost may have been applied,
so the sink resolves what exists before it sends again (see sink.py).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson
from pydantic import SecretStr

from service.domain.errors import SyncFailed
from service.upstream import exact_json
from service.upstream.retry import (
    RetryableStatus,
    RetryPolicy,
    describe_fault,
    is_retryable_status,
    parse_retry_after,
)
from service.upstream.urls import redact_url

log = logging.getLogger(__name__)

_MESSAGE_LIMIT = 500


class MedusaRejected(Exception):
    """Medusa answered a 4xx other than 401/403/404/429: the request itself was refused."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"Medusa answered {status} ({kind}): {message}")
        self.status = status
        self.kind = kind
        self.message = message


class MedusaNotFound(MedusaRejected):
    """404: the resource (a sales channel, a category, a product) does not exist."""


def basic_auth(api_key: SecretStr) -> str:
    """Medusa takes a secret key as HTTP Basic with the key as user name and no password."""
    return "Basic " + base64.b64encode(f"{api_key.get_secret_value()}:".encode()).decode()


def _message(body: bytes) -> tuple[str, str]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "unknown", body.decode("utf-8", "replace").strip()[:_MESSAGE_LIMIT]
    if not isinstance(parsed, dict):
        return "unknown", str(parsed)[:_MESSAGE_LIMIT]
    return str(parsed.get("type", "unknown")), str(parsed.get("message", ""))[:_MESSAGE_LIMIT]


class MedusaClient:
    def __init__(
        self, http: aiohttp.ClientSession, url: str, api_key: SecretStr, policy: RetryPolicy
    ) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._headers = {"Authorization": basic_auth(api_key), "Accept": "application/json"}
        self._policy = policy

    @property
    def target(self) -> str:
        """The shop, as stored with the links and shown by status: its URL without credentials."""
        return redact_url(self._url)

    async def _once(self, method: str, path: str, params: Any, body: bytes | None) -> Any:
        headers = self._headers if body is None else {**self._headers, "Content-Type": "application/json"}
        async with self._http.request(
            method, f"{self._url}{path}", params=params, data=body, headers=headers
        ) as response:
            payload = await response.read()
            if response.status in (200, 201):
                return orjson.loads(payload) if payload else None
            kind, message = _message(payload)
            if response.status in (401, 403):
                raise SyncFailed(
                    f"Medusa refused the API key ({response.status} {message or kind}): set"
                    " SYNC_MEDUSA_API_KEY to a secret key (sk_...) of an admin of this shop"
                )
            if is_retryable_status(response.status):
                raise RetryableStatus(response.status, parse_retry_after(response.headers.get("Retry-After")))
            if response.status == 404:
                raise MedusaNotFound(response.status, kind, message)
            raise MedusaRejected(response.status, kind, message)

    async def read(self, path: str, params: Sequence[tuple[str, str]] | Mapping[str, str] = ()) -> Any:
        """A GET, retried on transient faults; SyncFailed once the attempts run out."""
        return await self._policy.call(
            lambda: self._once("GET", path, params, None), f"GET {path}", peer="Medusa"
        )

    async def create(self, path: str, body: Mapping[str, Any]) -> Any:
        """A small idempotent-enough write (a category, a sales channel link): retried like a read.

        Callers look up what exists first; a retried create that had been applied answers 400
        (duplicate handle), which they resolve by reading again.
        """
        data = exact_json.dumps(body)
        return await self._policy.call(
            lambda: self._once("POST", path, (), data), f"POST {path}", peer="Medusa"
        )

    async def send_once(self, path: str, body: bytes) -> Any:
        """A write sent exactly once: transient faults (RETRYABLE_EXCEPTIONS) reach the caller."""
        return await self._once("POST", path, (), body)

    def describe(self, fault: BaseException, where: str, attempts: int) -> str:
        return describe_fault(fault, where, attempts, peer="Medusa")
