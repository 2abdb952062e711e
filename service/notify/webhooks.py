"""Delivering webhook events: signed POSTs, retried with backoff, recorded attempt by attempt.

Every process with webhooks configured runs a :class:`Notifier`. It looks once a second (a read) for
runs owed an event and for deliveries due again, claims them for a lease, posts, and records the
attempt. A receiver that hangs or fails costs only its own delivery's retries: runs never wait for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from service.database.errors import STORAGE_FAULTS
from service.ledger.runs import Ledger
from service.notify.events import RUN_FINISHED, run_finished_body
from service.notify.outbox import Attempt, ClaimedDelivery, Target, WebhookOutbox
from service.support.timeutil import utc_now
from service.upstream.urls import redact_url

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Product-Sync-Signature"
TIMESTAMP_HEADER = "X-Product-Sync-Timestamp"
EVENT_HEADER = "X-Product-Sync-Event"
DELIVERY_HEADER = "X-Product-Sync-Delivery"

# How often a notifier looks for work: a run's event leaves within about this long of its end.
POLL_INTERVAL_S = 1.0
# Deliveries attempted at once by one process; a hanging receiver holds one of them until its timeout.
_IN_FLIGHT = 8
# The faults an attempt may meet, explicitly: each is retried (with backoff) until attempts run out.
_ATTEMPT_FAULTS = (aiohttp.ClientError, TimeoutError, OSError)


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of ``<timestamp>.<body>``, hex, prefixed ``sha256=``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def target_of(url: str) -> Target:
    return Target(hashlib.sha256(url.encode()).hexdigest()[:32], redact_url(url))


@dataclass(frozen=True)
class WebhookPolicy:
    attempts: int
    timeout_s: float
    base_delay_s: float
    max_delay_s: float

    def delay_after(self, attempts_made: int) -> float:
        # Equal jitter: half the exponential step for sure, the rest at random, so receivers that come
        # back are not hit by every delivery at the same instant.
        step = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempts_made - 1))
        return step / 2 + random.uniform(0, step / 2)


class Notifier:
    def __init__(
        self,
        outbox: WebhookOutbox,
        ledger: Ledger,
        session: aiohttp.ClientSession,
        urls: Sequence[str],
        secret: bytes,
        policy: WebhookPolicy,
    ) -> None:
        self._outbox = outbox
        self._ledger = ledger
        self._session = session
        self._targets = [target_of(url) for url in urls]
        self._urls = {target.key: url for target, url in zip(self._targets, urls, strict=True)}
        self._secret = secret
        self._policy = policy
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    async def start(self) -> None:
        """Record the targets; each is owed the runs that finish from now on."""
        await self._outbox.add_targets(self._targets, utc_now())

    async def run(self) -> None:
        """Until cancelled: deliver what is due, then look again a second later."""
        while True:
            try:
                await self.deliver_due()
            except STORAGE_FAULTS as exc:  # a busy or failing database: the next look tries again
                log.warning("could not read or record webhook deliveries: %s", exc)
            await asyncio.sleep(POLL_INTERVAL_S)

    async def deliver_due(self) -> int:
        """One pass: every delivery due now, attempted once; returns how many were attempted."""
        now = utc_now()
        keys = list(self._urls)
        if not await self._outbox.has_work(keys, now):
            return 0
        # The lease outlasts an attempt, so no other process takes a delivery that is still in flight.
        lease = timedelta(seconds=self._policy.timeout_s * 2 + 5)
        claimed = await self._outbox.claim_due(keys, self._owner, now, now + lease, _IN_FLIGHT)
        await asyncio.gather(*(self._deliver(delivery) for delivery in claimed))
        return len(claimed)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        run = await self._ledger.get_run(delivery.run_id)
        url = self._urls[delivery.target]
        if run is None:  # pruned by retention before it could be told: nothing left to send
            attempt = Attempt("failed", None, "the run is no longer in the ledger")
        else:
            attempt = await self._post(url, run_finished_body(run), delivery)
        if not await self._outbox.record(delivery, self._owner, attempt, utc_now()):
            log.warning("webhook delivery %s was taken over by another process; not recorded", delivery.id)
            return
        where = redact_url(url)
        if attempt.status == "delivered":
            log.info("run %s: webhook delivered to %s", delivery.run_id, where)
        elif attempt.status == "failed":
            log.warning("run %s: webhook to %s given up: %s", delivery.run_id, where, attempt.error)
        else:
            log.info("run %s: webhook to %s failed (%s); trying again", delivery.run_id, where, attempt.error)

    async def _post(self, url: str, body: bytes, delivery: ClaimedDelivery) -> Attempt:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: RUN_FINISHED,
            DELIVERY_HEADER: str(delivery.id),
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        http_status: int | None = None
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,  # a redirect is the receiver's misconfiguration, not a delivery
                timeout=aiohttp.ClientTimeout(total=self._policy.timeout_s),
            ) as response:
                http_status = response.status
            if 200 <= http_status < 300:
                return Attempt("delivered", http_status, None)
            error = f"the receiver answered HTTP {http_status}"
        except TimeoutError:
            error = f"no answer within {self._policy.timeout_s:g} s"
        except _ATTEMPT_FAULTS as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return self._retry_or_give_up(delivery, http_status, error)

    def _retry_or_give_up(self, delivery: ClaimedDelivery, http_status: int | None, error: str) -> Attempt:
        made = delivery.attempts + 1
        if made >= self._policy.attempts:
            return Attempt("failed", http_status, f"{error} (gave up after {made} attempts)")
        next_at: datetime = utc_now() + timedelta(seconds=self._policy.delay_after(made))
        return Attempt("pending", http_status, error, next_at)
