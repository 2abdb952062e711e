"""What every request to the feed carries (headers, timeouts, retries), and how an answer is judged."""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiohttp
from yarl import URL

from service.domain.errors import SyncFailed
from service.settings import Settings
from service.upstream.retry import RetryableStatus, RetryPolicy, is_retryable_status, parse_retry_after

_HEADER_LINE = re.compile(r"^([A-Za-z0-9!#$%&'*+.^_`|~-]+):\s*(.+)$")
_SNIPPET = 200


def upstream_headers(settings: Settings) -> dict[str, str]:
    """Extra headers plus the auth header: ``Name: value``, or a bare value sent as ``Authorization``."""
    headers = dict(settings.source_headers)
    if settings.source_auth_header is not None:
        secret = settings.source_auth_header.get_secret_value().strip()
        match = _HEADER_LINE.match(secret)
        if match and " " not in match[1]:
            headers[match[1]] = match[2]
        else:
            headers["Authorization"] = secret
    return headers


def request_timeout(settings: Settings) -> aiohttp.ClientTimeout:
    # No total per request: a long NDJSON stream is bounded by the run timeout, not a request timeout.
    return aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=settings.connect_timeout_s, sock_read=settings.read_timeout_s
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.retry_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s)


async def raise_for_status(resp: aiohttp.ClientResponse, where: str) -> None:
    if resp.status == 200:
        return
    if is_retryable_status(resp.status):
        raise RetryableStatus(resp.status, parse_retry_after(resp.headers.get("Retry-After")))
    body = (await resp.content.read(_SNIPPET)).decode("utf-8", "replace").strip()
    detail = f": {body}" if body else ""
    raise SyncFailed(f"Upstream answered {resp.status} {resp.reason or ''}".rstrip() + f" ({where}){detail}")


@dataclass(frozen=True)
class Upstream:
    """What every request to the feed carries: the session, URL, headers, timeouts and retry policy."""

    http: aiohttp.ClientSession
    url: URL
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout
    policy: RetryPolicy

    @classmethod
    def of(
        cls, http: aiohttp.ClientSession, url: str, settings: Settings, policy: RetryPolicy | None
    ) -> Upstream:
        return cls(
            http,
            URL(url),
            upstream_headers(settings),
            request_timeout(settings),
            policy or retry_policy(settings),
        )

    async def get(self, url: URL | None = None) -> aiohttp.ClientResponse:
        """GET ``url`` (default: the feed's own); the caller releases the response (``async with``)."""
        return await self.http.get(url or self.url, headers=self.headers, timeout=self.timeout)
