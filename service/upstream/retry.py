"""Bounded retries with exponential backoff and jitter for upstream requests.

Only transient faults are retried: connection errors, timeouts, truncated bodies, 429 and 5xx. The
last fault becomes a SyncFailed whose message says what went wrong, where, and how often it was tried.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import aiohttp

from service.domain.errors import SyncFailed

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryableStatus(Exception):
    """Upstream answered 429 or 5xx: worth asking again, after ``retry_after`` seconds if it said so."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"Upstream answered {status}")
        self.status = status
        self.retry_after = retry_after


# The transient faults, explicitly. ServerTimeoutError / ConnectionTimeoutError are TimeoutErrors;
# ClientPayloadError is a body cut off by the connection closing.
RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    RetryableStatus,
    TimeoutError,
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
)


def is_retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    base_delay_s: float
    max_delay_s: float
    rng: random.Random = field(default_factory=random.Random)

    def delay_before(self, attempt: int, fault: BaseException) -> float:
        """Pause before ``attempt`` (2, 3, ...): Retry-After when given, else backoff with equal jitter."""
        if isinstance(fault, RetryableStatus) and fault.retry_after is not None:
            return min(fault.retry_after, self.max_delay_s)
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 2))
        return backoff / 2 + self.rng.uniform(0, backoff / 2)

    async def call(self, operation: Callable[[], Awaitable[T]], where: str, peer: str = "Upstream") -> T:
        """Run ``operation`` until it succeeds, a non-retryable error escapes, or attempts run out."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await operation()
            except RETRYABLE_EXCEPTIONS as fault:
                if attempt == self.attempts:
                    raise SyncFailed(describe_fault(fault, where, attempt, peer)) from fault
                delay = self.delay_before(attempt + 1, fault)
                log.warning(
                    "upstream fault (%s), attempt %d of %d; retrying in %.2f s",
                    describe_fault(fault, where, attempt, peer),
                    attempt,
                    self.attempts,
                    delay,
                )
                await asyncio.sleep(delay)
            except aiohttp.TooManyRedirects:
                raise SyncFailed(f"{peer} redirected too many times ({where})") from None
            except aiohttp.ClientResponseError as exc:
                # Raised for answers that are not valid HTTP. Its str() carries the URL, whose query
                # may hold a credential: keep only the parser's message, on one line.
                detail = " ".join(exc.message.split())[:200]
                raise SyncFailed(f"{peer} sent a malformed HTTP answer ({where}): {detail}") from None
            except aiohttp.ClientError as exc:  # not transient: a bad URL, an answer that is not HTTP...
                raise SyncFailed(f"{peer} request failed ({where}): {exc}") from exc
        raise AssertionError("unreachable: the loop returns or raises")


def describe_fault(fault: BaseException, where: str, attempts: int, peer: str = "Upstream") -> str:
    """What failed, for the ledger: ``peer`` is who was asked (the feed's "Upstream", or "Medusa")."""
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    if isinstance(fault, RetryableStatus):
        return f"{peer} answered {fault.status} {tries} ({where})"
    if isinstance(fault, aiohttp.ClientConnectorError):
        reason = _os_error_reason(fault.os_error)
        who = "upstream" if peer == "Upstream" else peer
        return f"Cannot connect to {who} {fault.host}:{fault.port} ({reason}) {tries} ({where})"
    if isinstance(fault, TimeoutError):
        return f"Network timeout {tries} ({where})"
    if isinstance(fault, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return f"{peer} connection closed mid-response {tries} ({where})"
    return f"Network error: {fault} {tries} ({where})"


def _os_error_reason(error: OSError) -> str:
    """``Connection refused`` rather than asyncio's ``Connect call failed ('127.0.0.1', 9)``."""
    if error.errno:
        return os.strerror(error.errno)
    return error.strerror or str(error)
