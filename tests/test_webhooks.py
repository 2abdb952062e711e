"""Webhooks: a signed event at the end of every run, to loopback receivers that verify it, fail, hang
or are down; deliveries recorded in the ledger, and runs never waiting for them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from service.app import create_app
from service.settings import Settings
from tests.conftest import (
    AUTH,
    BOTH_BACKENDS,
    AiohttpClient,
    AiohttpServer,
    make_settings,
    sync_once,
    wait_until,
)
from tests.ledger_rows import read
from tests.service_process import free_port
from tests.test_cli import cli_env, run_cli

SECRET = "whsec-test-0123456789abcdef"


@dataclass
class Receiver:
    """A loopback webhook receiver: answers each request with the next of ``answers`` (the last one
    repeats); 0 means hang until the client gives up."""

    answers: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            self.received.append((dict(request.headers), body))
            answer = self.answers[min(len(self.received), len(self.answers)) - 1]
            if answer == 0:
                await asyncio.sleep(3600)
            return web.Response(status=answer, text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        return app

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """What the README tells a receiver to do, written from the README rather than from our code."""
    timestamp = headers["X-Product-Sync-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Product-Sync-Signature"], f"sha256={expected}")


async def receiver_url(aiohttp_server: AiohttpServer, receiver: Receiver) -> str:
    server = await aiohttp_server(receiver.app(), host="127.0.0.1")
    return str(server.make_url("/hook"))


def deliveries(settings: Settings) -> list[tuple[Any, ...]]:
    return read(
        settings,
        "SELECT run_id, status, attempts, last_status, last_error FROM webhook_deliveries ORDER BY id",
    )


def hook_settings(tmp_path: Path, upstream_url: str, urls: list[str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_url": tuple(urls),
        "webhook_secret": SECRET,
        "webhook_retry_base_delay_s": 0.1,
        "webhook_retry_max_delay_s": 0.2,
        "webhook_timeout_s": 2.0,
        **overrides,
    }
    return make_settings(tmp_path, source_url=upstream_url, **values)


@BOTH_BACKENDS
async def test_every_receiver_gets_a_signed_event_and_the_run_shows_the_deliveries(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
    upstream_url: str,
    store_settings: dict[str, Any],
) -> None:
    first, second = Receiver(), Receiver()
    urls = [await receiver_url(aiohttp_server, first), await receiver_url(aiohttp_server, second) + "?key=s3"]
    settings = hook_settings(tmp_path, upstream_url, urls, **store_settings)
    client = await aiohttp_client(create_app(settings))
    status = await sync_once(client)
    await wait_until(lambda: len(first.received) == 1 and len(second.received) == 1, what="both deliveries")

    for receiver in (first, second):
        ((headers, body),) = receiver.received
        assert verify(headers, body)
        assert not verify(headers, body, secret="another secret")
        assert not verify(headers, body.replace(b'"success"', b'"error"'))
        assert headers["X-Product-Sync-Event"] == "run.finished"
        event = json.loads(body)
        assert event["event"] == "run.finished" and event["runId"] == status["runId"]
        assert event["outcome"] == "success" and event["error"] is None
        assert event["startedVia"] == "manual" and event["triggeredBy"] == "admin"
        assert event["stats"] == status["stats"] and event["duration"] == status["lastDuration"]
        assert event["finishedAt"] == status["finishedAt"]

    await wait_until(lambda: [d[1] for d in deliveries(settings)] == ["delivered", "delivered"])
    detail = await (await client.get(f"/admin/sync/runs/{status['runId']}", headers=AUTH)).json()
    hooks = detail["data"]["webhooks"]
    assert [(h["status"], h["attempts"], h["lastStatus"]) for h in hooks] == [("delivered", 1, 200)] * 2
    # The URL's secret is not shown.
    assert sorted(h["url"].rpartition("/")[2] for h in hooks) == ["hook", "hook?key=***"]
    assert all(h["deliveredAt"] and h["nextAttemptAt"] is None for h in hooks)


@BOTH_BACKENDS
async def test_a_failing_receiver_is_retried_with_the_same_event_and_the_run_does_not_wait(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
    upstream_url: str,
    store_settings: dict[str, Any],
) -> None:
    receiver = Receiver(answers=[500, 503, 200])
    settings = hook_settings(
        tmp_path, upstream_url, [await receiver_url(aiohttp_server, receiver)], **store_settings
    )
    client = await aiohttp_client(create_app(settings))
    status = await sync_once(client)
    assert status["lastStatus"] == "success"  # recorded before any delivery succeeded
    await wait_until(lambda: deliveries(settings)[:1] == [(1, "delivered", 3, 200, None)])
    bodies = {body for _, body in receiver.received}
    assert len(receiver.received) == 3 and len(bodies) == 1  # every attempt sends the same event
    assert all(verify(headers, body) for headers, body in receiver.received)
    # A second run is told too, once.
    await sync_once(client)
    await wait_until(lambda: len(deliveries(settings)) == 2 and len(receiver.received) == 4)
    assert [e["runId"] for e in receiver.events()] == [1, 1, 1, 2]


@BOTH_BACKENDS
async def test_a_receiver_that_is_down_is_given_up_on_and_nothing_else_changes(
    aiohttp_client: AiohttpClient, tmp_path: Path, upstream_url: str, store_settings: dict[str, Any]
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    settings = hook_settings(tmp_path, upstream_url, [down], webhook_attempts=3, **store_settings)
    client = await aiohttp_client(create_app(settings))
    status = await sync_once(client)
    assert status["lastStatus"] == "success"
    await wait_until(lambda: [d[1] for d in deliveries(settings)] == ["failed"])
    ((run_id, state, attempts, last_status, last_error),) = deliveries(settings)
    assert (run_id, state, attempts, last_status) == (1, "failed", 3, None)
    assert "gave up after 3 attempts" in last_error and "Connect" in last_error
    again = await sync_once(client)
    assert again["lastStatus"] == "success" and again["runId"] == 2


@BOTH_BACKENDS
async def test_a_hanging_receiver_times_out_and_does_not_hold_back_another(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
    upstream_url: str,
    store_settings: dict[str, Any],
) -> None:
    hanging, healthy = Receiver(answers=[0, 200]), Receiver()
    urls = [await receiver_url(aiohttp_server, hanging), await receiver_url(aiohttp_server, healthy)]
    settings = hook_settings(tmp_path, upstream_url, urls, webhook_timeout_s=0.5, **store_settings)
    client = await aiohttp_client(create_app(settings))
    await sync_once(client)
    await wait_until(lambda: len(healthy.received) == 1, what="the healthy receiver's delivery")
    await wait_until(lambda: [d[1] for d in deliveries(settings)] == ["delivered", "delivered"])
    hung = await (await client.get("/admin/sync/runs/1", headers=AUTH)).json()
    (slow,) = [h for h in hung["data"]["webhooks"] if h["attempts"] == 2]
    assert slow["status"] == "delivered" and len(hanging.received) == 2


@BOTH_BACKENDS
async def test_a_failed_run_is_reported_with_its_error(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
    upstream_url: str,
    store_settings: dict[str, Any],
) -> None:
    receiver = Receiver()
    wrong = upstream_url.replace("/products", "/no-such-feed")
    settings = hook_settings(
        tmp_path, wrong, [await receiver_url(aiohttp_server, receiver)], **store_settings
    )
    client = await aiohttp_client(create_app(settings))
    status = await sync_once(client)
    assert status["lastStatus"] == "error"
    await wait_until(lambda: len(receiver.received) == 1)
    (event,) = receiver.events()
    assert event["outcome"] == "error" and event["error"] == status["lastError"]


@BOTH_BACKENDS
async def test_a_pending_delivery_survives_a_restart(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
    upstream_url: str,
    store_settings: dict[str, Any],
) -> None:
    receiver = Receiver(answers=[500])
    settings = hook_settings(
        tmp_path, upstream_url, [await receiver_url(aiohttp_server, receiver)], **store_settings
    )
    first = await aiohttp_client(create_app(settings))
    await sync_once(first)
    await wait_until(lambda: deliveries(settings)[:1] and deliveries(settings)[0][2] >= 1)
    await first.close()
    attempts_before = deliveries(settings)[0][2]
    receiver.answers = [200]
    receiver.received.clear()

    second = await aiohttp_client(create_app(settings))
    await wait_until(lambda: deliveries(settings)[0][1] == "delivered")
    assert deliveries(settings)[0][2] == attempts_before + 1
    assert [e["runId"] for e in receiver.events()] == [1]
    await second.close()


async def test_a_cli_sync_notifies_before_it_exits(
    aiohttp_server: AiohttpServer, tmp_path: Path, upstream_url: str
) -> None:
    receiver = Receiver()
    url = await receiver_url(aiohttp_server, receiver)
    env = cli_env(tmp_path / "cli.db", upstream_url, SYNC_WEBHOOK_URL=url, SYNC_WEBHOOK_SECRET=SECRET)
    result = await run_cli("sync", env=env)
    assert result.code == 0, result
    ((headers, body),) = receiver.received
    assert verify(headers, body) and json.loads(body)["startedVia"] == "cli"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SYNC_WEBHOOK_URL": "http://127.0.0.1:1/hook"}, "needs SYNC_WEBHOOK_SECRET"),
        ({"SYNC_WEBHOOK_URL": "ftp://127.0.0.1/hook", "SYNC_WEBHOOK_SECRET": "s"}, "http:// or https://"),
    ],
)
def test_webhook_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_several_urls_and_a_secret_from_the_environment() -> None:
    settings = Settings.from_env(
        {"SYNC_WEBHOOK_URL": "http://127.0.0.1:1/a, http://127.0.0.1:2/b", "SYNC_WEBHOOK_SECRET": "s"}
    )
    assert settings.webhook_url == ("http://127.0.0.1:1/a", "http://127.0.0.1:2/b")
    assert "s" not in repr(settings.webhook_secret)
