"""The admin page in a real browser: Debian's chromium driven by Playwright, against the real service
(real SQLite ledger) and a slow DummyJSON-style upstream, both on loopback.

Run with ``pytest -m browser`` (needs /usr/bin/chromium and playwright; see scripts/install-browser.sh).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)
from pydantic import SecretStr
from pytest_aiohttp import AiohttpServer

from service.app import create_app
from service.settings import Settings
from tests.upstream import make_product

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "browser-test-admin-token-0123456789"
TOKEN_NAME = "admin"
DOC_EXAMPLES = Path(__file__).parent / "doc_examples"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# Generous upper bound for one whole run in the browser; a guard against hangs, not a speed check.
RUN_TIMEOUT_MS = 60_000
PAGE_SIZE = 10


# ---- upstream ------------------------------------------------------------------------------------


@dataclass
class Feed:
    """What the test upstream serves; tests change it between runs."""

    count: int = 40
    page_delay_s: float = 0.1
    fail_status: int | None = None
    invalid_ids: frozenset[int] = frozenset()
    price_bump: float = 0.0
    pages_served: int = field(default=0)


def feed_product(product_id: int, feed: Feed) -> dict[str, Any]:
    product = make_product(product_id)
    product["price"] = round(product["price"] + feed.price_bump, 2)
    if product_id in feed.invalid_ids:
        # An item the mapping must refuse: no title and a negative price.
        product.update(title="", price=-1)
    return product


def upstream_app(feed: Feed) -> web.Application:
    async def products(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "30"))
        skip = int(request.query.get("skip", "0"))
        await asyncio.sleep(feed.page_delay_s)
        feed.pages_served += 1
        if feed.fail_status is not None:
            return web.json_response({"message": "upstream refuses this request"}, status=feed.fail_status)
        ids = range(skip + 1, min(skip + limit, feed.count) + 1)
        return web.json_response(
            {
                "products": [feed_product(i, feed) for i in ids],
                "total": feed.count,
                "skip": skip,
                "limit": len(ids),
            }
        )

    app = web.Application()
    app.router.add_get("/products", products)
    return app


def closed_loopback_port() -> int:
    """A port nobody listens on: bound then released, so connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---- service -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    origin: str | None
    fetch_site: str | None
    has_session_cookie: bool
    has_authorization: bool
    status: int


@dataclass
class Service:
    server: TestServer
    db_path: Path
    seen: list[SeenRequest]

    def url(self, path: str = "") -> str:
        return str(self.server.make_url(path))

    def ledger(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """What an auditor sees with sqlite3: read the ledger file directly."""
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        connection.row_factory = sqlite3.Row
        try:
            return list(connection.execute(sql, params))
        finally:
            connection.close()

    async def api(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        """The same API over a bearer token, as a script would use it."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url(path), headers=headers) as response,
        ):
            body: dict[str, Any] = await response.json()
            return response.status, body

    async def status(self) -> dict[str, Any]:
        code, body = await self.api("GET", "/admin/sync/status")
        assert code == 200, body
        data: dict[str, Any] = body["data"]
        return data

    async def wait_until_idle(self) -> dict[str, Any]:
        for _ in range(RUN_TIMEOUT_MS // 100):
            data = await self.status()
            if not data["isRunning"]:
                return data
            await asyncio.sleep(0.1)
        raise AssertionError("the run did not finish")


StartService = Callable[..., Awaitable[Service]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def recording_middleware(seen: list[SeenRequest]) -> Any:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            raise
        else:
            status = response.status
            return response
        finally:
            seen.append(
                SeenRequest(
                    method=request.method,
                    path=request.path,
                    origin=request.headers.get("Origin"),
                    fetch_site=request.headers.get("Sec-Fetch-Site"),
                    has_session_cookie="sync_session" in request.cookies,
                    has_authorization="Authorization" in request.headers,
                    status=status,
                )
            )

    return record


@pytest.fixture
def feed() -> Feed:
    return Feed()


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer, feed: Feed) -> TestServer:
    return await aiohttp_server(upstream_app(feed))


@pytest.fixture
def start_service(aiohttp_server: AiohttpServer, tmp_path: Path, upstream: TestServer) -> StartService:
    numbers = itertools.count()

    async def start(source_url: str | None = None, **overrides: Any) -> Service:
        db_path = tmp_path / f"service-{next(numbers)}.db"
        settings = Settings(
            db_path=db_path,
            admin_tokens={TOKEN_NAME: SecretStr(ADMIN_TOKEN)},
            source_url=source_url or str(upstream.make_url("/products")),
            source_format="dummyjson",
            page_size=PAGE_SIZE,
            # One page at a time: these tests watch a slow run's progress page by page.
            page_window=1,
            batch_size=PAGE_SIZE,
            retry_attempts=1,
            retry_base_delay_s=0,
            **overrides,
        )
        app = create_app(settings)
        seen: list[SeenRequest] = []
        # Outermost, so it sees every request as the browser sent it and the final status answered.
        app.middlewares.insert(0, recording_middleware(seen))
        return Service(server=await aiohttp_server(app), db_path=db_path, seen=seen)

    return start


@pytest.fixture
async def service(start_service: StartService) -> Service:
    return await start_service()


# ---- browser -------------------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    created = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield created
    finally:
        await created.close()


@dataclass
class PageWatch:
    """Everything the page says on its own: console errors (CSP violations land here) and exceptions."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.page_errors == []
        assert [text for text in self.console_errors if "Content Security Policy" in text] == []


async def open_admin(context: BrowserContext, service: Service) -> tuple[Page, PageWatch]:
    page = await context.new_page()
    watch = PageWatch()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watch.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    await page.goto(service.url("/admin/"))
    return page, watch


async def sign_in(page: Page, token: str = ADMIN_TOKEN) -> None:
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def signed_in_page(context: BrowserContext, service: Service) -> tuple[Page, PageWatch]:
    page, watch = await open_admin(context, service)
    await sign_in(page)
    await expect(page.get_by_role("button", name="Sync products")).to_be_visible()
    # Let the dashboard's own first requests (status, history) finish before a test acts.
    await expect(summary(page)).not_to_have_text("Checking status…")
    await page.wait_for_function(
        "() => !document.getElementById('history').hidden || !document.getElementById('history-empty').hidden"
    )
    return page, watch


def summary(page: Page) -> Any:
    return page.get_by_role("status")


SNAPSHOT_JS = """() => {
  const bar = document.getElementById('progress-bar')
  return {
    created: Number(document.getElementById('count-created').textContent),
    barShown: bar.checkVisibility(),
    value: bar.value,
    max: bar.max,
    syncDisabled: document.getElementById('sync-button').disabled,
  }
}"""


# ---- scenarios -----------------------------------------------------------------------------------


async def test_wrong_token_is_refused_and_the_right_one_signs_in_without_keeping_it(
    context: BrowserContext, service: Service
) -> None:
    page, watch = await open_admin(context, service)
    token_input = page.get_by_label("Admin token")
    await expect(token_input).to_be_visible()

    await sign_in(page, "not-the-admin-token")
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    await expect(token_input).to_have_value("")
    await expect(page.get_by_role("button", name="Sync products")).to_be_hidden()
    assert await context.cookies() == []
    await expect(token_input).to_be_focused()  # ready for another try

    # Keyboard only: Tab from the top of a fresh page reaches the token field, Enter submits.
    await page.reload()
    await expect(token_input).to_be_visible()
    await page.keyboard.press("Tab")  # skip link
    await page.keyboard.press("Tab")
    await expect(token_input).to_be_focused()
    await page.keyboard.type(ADMIN_TOKEN)
    await page.keyboard.press("Enter")
    await expect(page.get_by_text(f"Signed in as {TOKEN_NAME}")).to_be_visible()
    await expect(page.get_by_role("heading", name="Product sync")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Sync products")).to_be_focused()

    # The session lives in an HttpOnly cookie; the token itself is nowhere the page can reach.
    cookies = {cookie["name"]: cookie for cookie in await context.cookies()}
    session_cookie = cookies["sync_session"]
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Strict"
    assert session_cookie["value"] != ADMIN_TOKEN
    stored = await page.evaluate(
        "() => [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage)]"
    )
    assert stored == ["", "{}", "{}"]
    await expect(token_input).to_have_value("")
    assert ADMIN_TOKEN not in await page.content()

    # A reload keeps the session (GET /admin/session); signing out ends it.
    await page.reload()
    await expect(page.get_by_text(f"Signed in as {TOKEN_NAME}")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(token_input).to_be_visible()
    assert "sync_session" not in {cookie["name"] for cookie in await context.cookies()}
    await page.reload()
    await expect(token_input).to_be_visible()
    await expect(page.get_by_role("button", name="Sync products")).to_be_hidden()
    watch.assert_clean()


async def test_documented_examples_run_verbatim_from_a_signed_in_page(
    context: BrowserContext, service: Service, feed: Feed
) -> None:
    """The API document's own client code works unchanged: its SyncButton (no Authorization header,
    so only the session cookie authenticates) and its React example (bearer token)."""
    feed.count, feed.page_delay_s = 30, 0.8
    page, watch = await signed_in_page(context, service)

    already_seen = len(service.seen)
    sync_button_trigger = (DOC_EXAMPLES / "sync_button_trigger.js").read_text()
    await page.evaluate(
        "async () => {\n"
        "  window.syncButton = { loading: [], statuses: [] }\n"
        "  const setLoading = (value) => window.syncButton.loading.push(value)\n"
        "  const setStatus = (value) => window.syncButton.statuses.push(value)\n"
        f"{sync_button_trigger}\n"
        "  await triggerSync()\n"
        "}"
    )
    await page.wait_for_function("() => window.syncButton.loading.at(-1) === false", timeout=RUN_TIMEOUT_MS)
    loading, statuses = await page.evaluate("() => [window.syncButton.loading, window.syncButton.statuses]")
    assert loading == [True, False]
    assert statuses[-1]["lastStatus"] == "success"
    assert statuses[-1]["stats"]["created"] == feed.count
    assert any(status["isRunning"] for status in statuses[:-1]), "the slow run was never seen running"
    # Every request of the document's SyncButton authenticated by the session cookie alone.
    calls = [seen for seen in service.seen[already_seen:] if seen.path.startswith("/admin/sync/")]
    assert {(seen.method, seen.path) for seen in calls} == {
        ("POST", "/admin/sync/trigger"),
        ("GET", "/admin/sync/status"),
    }
    for seen in calls:
        assert (seen.has_authorization, seen.has_session_cookie, seen.status) == (False, True, 200)

    # The React example, verbatim, with the bearer token the document expects in `token`.
    logs: list[str] = []
    page.on("console", lambda message: logs.append(message.text))
    react_example = (DOC_EXAMPLES / "react_example.js").read_text()
    await page.evaluate(f"async (token) => {{\n{react_example}\nawait triggerSync()\n}}", ADMIN_TOKEN)
    for _ in range(RUN_TIMEOUT_MS // 100):
        # "Updated: …" is the success path's last line; "Sync failed…" the failure path's only one.
        if any(log.startswith(("Updated: ", "Sync failed")) for log in logs):
            break
        await asyncio.sleep(0.1)
    assert any(log.startswith("Sync started at: ") for log in logs)
    assert "Sync completed successfully!" in logs
    # Second run over the same feed: nothing new, nothing changed.
    assert "Created: 0" in logs
    assert "Updated: 0" in logs

    rows = service.ledger("SELECT status, created, unchanged, triggered_by FROM runs ORDER BY id")
    assert [tuple(row) for row in rows] == [
        ("success", feed.count, 0, TOKEN_NAME),
        ("success", 0, feed.count, TOKEN_NAME),
    ]
    watch.assert_clean()


def attacker_page(target: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>elsewhere</title></head><body>
<form id="csrf" method="POST" action="{target}/admin/sync/trigger" enctype="text/plain">
  <input name="x" value="y"></form>
<script>
async function attack() {{
  const outcomes = []
  for (const mode of ['cors', 'no-cors']) {{
    try {{
      const init = {{method: 'POST', mode, credentials: 'include'}}
      const response = await fetch('{target}/admin/sync/trigger', init)
      outcomes.push(mode + ':' + response.type + ':' + response.status)
    }} catch (error) {{
      outcomes.push(mode + ':' + error.name)
    }}
  }}
  return outcomes
}}
</script></body></html>"""


async def test_cross_origin_page_cannot_trigger_with_the_session_cookie(
    aiohttp_server: AiohttpServer, context: BrowserContext, service: Service
) -> None:
    page, watch = await signed_in_page(context, service)
    target = service.url("").rstrip("/")

    async def serve_attacker(request: web.Request) -> web.Response:
        return web.Response(text=attacker_page(target), content_type="text/html")

    attacker_app = web.Application()
    attacker_app.router.add_get("/", serve_attacker)
    attacker = await aiohttp_server(attacker_app)
    assert attacker.port != service.server.port  # another origin: same loopback host, other port

    other = await context.new_page()
    await other.goto(str(attacker.make_url("/")))
    outcomes = await other.evaluate("attack()")
    # CORS hides the answer from the other origin; the real verdict is the server's, checked below.
    assert outcomes == ["cors:TypeError", "no-cors:opaque:0"]
    async with other.expect_navigation():
        await other.evaluate("document.getElementById('csrf').submit()")
    assert json.loads(await other.inner_text("body"))["status"] == "error"

    attempts = [seen for seen in service.seen if seen.path == "/admin/sync/trigger"]
    assert len(attempts) == 3
    for attempt in attempts:
        assert attempt.method == "POST"
        assert attempt.origin == str(attacker.make_url("")).rstrip("/")
        assert attempt.fetch_site == "same-site"  # other port, same host: cookies still ride along
        assert attempt.has_session_cookie  # so the origin check is what refused it
        assert not attempt.has_authorization
        assert attempt.status == 403

    # Not triggered: the ledger has no run and the status is idle.
    assert service.ledger("SELECT count(*) FROM runs")[0][0] == 0
    assert (await service.status())["lastStatus"] == "idle"

    # The same request from the admin page's own origin is accepted.
    accepted = await page.evaluate(
        "async () => (await fetch('/admin/sync/trigger',"
        " {method: 'POST', credentials: 'same-origin'})).status"
    )
    assert accepted == 200
    assert service.ledger("SELECT count(*) FROM runs")[0][0] == 1
    await service.wait_until_idle()
    watch.assert_clean()


async def test_slow_sync_shows_live_progress_then_success(
    context: BrowserContext, service: Service, feed: Feed
) -> None:
    feed.count, feed.page_delay_s = 50, 1.0
    page, watch = await signed_in_page(context, service)
    sync_button = page.get_by_role("button", name="Sync products")
    await expect(summary(page)).to_have_text("No sync has run yet.")
    await expect(page.locator("#sink-target")).to_have_text(
        re.compile(r"^Products go to the SQLite catalog .+\.db\.$")
    )

    await sync_button.click()
    await expect(sync_button).to_be_disabled()
    await expect(page.get_by_role("button", name="Cancel sync")).to_be_visible()
    await expect(summary(page)).to_contain_text("Sync running since")
    await expect(page.get_by_role("progressbar", name="Progress")).to_be_visible(timeout=10_000)

    # One atomic look at the page every 200 ms: what the operator sees while the run goes on.
    snapshots: list[dict[str, Any]] = []
    for _ in range(RUN_TIMEOUT_MS // 200):
        snapshot = await page.evaluate(SNAPSHOT_JS)
        snapshots.append(snapshot)
        if not snapshot["syncDisabled"]:
            break
        await asyncio.sleep(0.2)
    created_seen = [snapshot["created"] for snapshot in snapshots]
    progress_seen = [(snapshot["value"], snapshot["max"]) for snapshot in snapshots if snapshot["barShown"]]

    assert created_seen == sorted(created_seen), "counters never go backwards"
    assert any(0 < seen < feed.count for seen in created_seen), f"no partial count seen: {created_seen}"
    assert progress_seen, "the progress bar never showed"
    assert all(maximum == feed.count for _, maximum in progress_seen)
    assert any(0 < value < feed.count for value, _ in progress_seen), progress_seen

    await expect(summary(page)).to_contain_text("Last sync succeeded")
    await expect(summary(page)).to_contain_text(f"{feed.count} created, 0 updated, 0 unchanged, 0 errors")
    await expect(page.locator("#count-created")).to_have_text(str(feed.count))
    await expect(sync_button).to_be_enabled()
    await expect(page.get_by_role("button", name="Cancel sync")).to_be_hidden()
    await expect(page.locator("#history-body tr.run-row")).to_have_count(1)
    await expect(page.locator("#history-body tr.run-row").first).to_contain_text("success")

    row = service.ledger("SELECT status, created, errors FROM runs")[0]
    assert tuple(row) == ("success", feed.count, 0)
    watch.assert_clean()


async def test_second_tab_is_told_a_sync_is_already_running(
    context: BrowserContext, service: Service, feed: Feed
) -> None:
    feed.count, feed.page_delay_s = 60, 0.8
    first, first_watch = await signed_in_page(context, service)
    second, second_watch = await open_admin(context, service)  # same browser: same session cookie
    second_button = second.get_by_role("button", name="Sync products")
    await expect(second_button).to_be_enabled()

    await first.get_by_role("button", name="Sync products").click()
    await expect(first.get_by_role("button", name="Sync products")).to_be_disabled()
    await expect(summary(first)).to_contain_text("Sync running since")  # the trigger has answered
    running = await service.status()
    assert running["isRunning"] is True
    started_at = running["lastRun"]

    await second_button.click()
    local_start = await second.evaluate("(iso) => new Date(iso).toLocaleString()", started_at)
    await expect(second.get_by_role("alert")).to_have_text(f"A sync is already running since {local_start}.")
    # The second tab now follows the run already going instead of offering to start another.
    await expect(second_button).to_be_disabled()
    await expect(summary(second)).to_contain_text("Sync running since")

    for page in (first, second):
        await expect(summary(page)).to_contain_text("Last sync succeeded", timeout=RUN_TIMEOUT_MS)
    assert service.ledger("SELECT count(*) FROM runs")[0][0] == 1
    first_watch.assert_clean()
    second_watch.assert_clean()


@pytest.mark.parametrize("failure", ["http-400", "unreachable"])
async def test_upstream_failure_shows_its_error(
    context: BrowserContext, start_service: StartService, feed: Feed, failure: str
) -> None:
    if failure == "http-400":
        feed.fail_status = 400
        service = await start_service()
    else:
        service = await start_service(source_url=f"http://127.0.0.1:{closed_loopback_port()}/products")
    page, watch = await signed_in_page(context, service)

    await page.get_by_role("button", name="Sync products").click()
    await expect(summary(page)).to_contain_text("Last sync failed", timeout=RUN_TIMEOUT_MS)
    status = await service.status()
    assert status["lastStatus"] == "error"
    assert status["lastError"]
    await expect(summary(page)).to_contain_text(status["lastError"])
    if failure == "http-400":
        assert "400" in status["lastError"]
    await expect(page.get_by_role("button", name="Sync products")).to_be_enabled()
    await expect(page.locator("#history-body tr.run-row").first).to_contain_text("error")
    watch.assert_clean()


async def test_cancel_stops_the_running_sync(context: BrowserContext, service: Service, feed: Feed) -> None:
    feed.count, feed.page_delay_s = 200, 0.5
    page, watch = await signed_in_page(context, service)
    await page.get_by_role("button", name="Sync products").click()
    cancel = page.get_by_role("button", name="Cancel sync")
    await expect(cancel).to_be_visible()
    await cancel.click()
    # The page's own request, on the session cookie (its "requested" notice goes once the outcome shows).
    await expect(page.get_by_role("button", name="Sync products")).to_be_enabled(timeout=RUN_TIMEOUT_MS)
    cancels = [seen for seen in service.seen if seen.path == "/admin/sync/cancel"]
    assert [(seen.method, seen.has_session_cookie, seen.status) for seen in cancels] == [("POST", True, 200)]
    await expect(summary(page)).to_contain_text(
        f"Last sync was cancelled by {TOKEN_NAME}", timeout=RUN_TIMEOUT_MS
    )
    await expect(page.get_by_role("button", name="Sync products")).to_be_enabled()
    await expect(cancel).to_be_hidden()

    row = service.ledger("SELECT status, cancelled_by, processed FROM runs")[0]
    assert (row["status"], row["cancelled_by"]) == ("cancelled", TOKEN_NAME)
    assert row["processed"] < feed.count
    watch.assert_clean()


async def test_history_lists_runs_with_item_errors_on_demand(
    browser: Browser, context: BrowserContext, service: Service, feed: Feed
) -> None:
    feed.count, feed.page_delay_s = 24, 0.05
    page, watch = await signed_in_page(context, service)
    sync_button = page.get_by_role("button", name="Sync products")

    async def run_once() -> None:
        await sync_button.click()
        await expect(sync_button).to_be_enabled(timeout=RUN_TIMEOUT_MS)
        await service.wait_until_idle()

    await run_once()  # success: everything created
    feed.fail_status = 400
    await run_once()  # error: upstream refuses
    feed.fail_status, feed.invalid_ids, feed.price_bump = None, frozenset({3, 7}), 1.0
    await run_once()  # success with two item errors and the rest updated

    await page.get_by_role("button", name="Refresh").click()
    rows = page.locator("#history-body tr.run-row")
    await expect(rows).to_have_count(3)
    run_ids = [row["id"] for row in service.ledger("SELECT id FROM runs ORDER BY id DESC")]
    for row, run_id, status in zip(await rows.all(), run_ids, ["success", "error", "success"], strict=True):
        await expect(row).to_contain_text(f"#{run_id}")
        await expect(row.locator("td[data-label=Status]")).to_have_text(status)
        await expect(row.locator("td[data-label='Triggered by']")).to_have_text(TOKEN_NAME)
        await expect(row.locator("td[data-label=Duration]")).to_contain_text(" s")
    newest = rows.nth(0)
    await expect(newest.locator("td[data-label=Updated]")).to_have_text(str(feed.count - 2))
    await expect(newest.locator("td[data-label=Errors]")).to_have_text("2")

    # Item errors of the newest run, on demand, as the API lists them.
    code, body = await service.api("GET", f"/admin/sync/runs/{run_ids[0]}")
    assert code == 200
    api_errors = body["data"]["errors"]
    assert [error["externalId"] for error in api_errors] == ["3", "7"]
    details_button = page.get_by_role("button", name=f"Details of run {run_ids[0]}")
    await details_button.click()
    await expect(details_button).to_have_attribute("aria-expanded", "true")
    error_rows = page.locator(f"#run-details-{run_ids[0]} table.item-errors tbody tr")
    await expect(error_rows).to_have_count(len(api_errors))
    for error_row, error in zip(await error_rows.all(), api_errors, strict=True):
        await expect(error_row).to_contain_text(error["reason"])
        await expect(error_row.locator("td[data-label='Item id']")).to_have_text(error["externalId"])

    # The failed run's own error message.
    failed_button = page.get_by_role("button", name=f"Details of run {run_ids[1]}")
    await failed_button.click()
    failed_error = service.ledger("SELECT error_message FROM runs WHERE id = ?", (run_ids[1],))[0][0]
    await expect(page.locator(f"#run-details-{run_ids[1]}")).to_contain_text(f"Run error: {failed_error}")
    await expect(page.locator(f"#run-details-{run_ids[1]}")).to_contain_text("No item errors.")
    await failed_button.click()
    await expect(page.locator(f"#run-details-{run_ids[1]}")).to_have_count(0)
    await expect(failed_button).to_have_attribute("aria-expanded", "false")
    await failed_button.press("Enter")  # and back open from the keyboard, for the screenshot
    await expect(page.locator(f"#run-details-{run_ids[1]}")).to_contain_text("Run error:")

    # Screenshots of the finished page for a human look: desktop, then phone width.
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "admin-page.png"), full_page=True)
    phone = await browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    try:
        # The phone signs in on its own, like a second device would.
        mobile_sign_in_page, _ = await open_admin(phone, service)
        await sign_in(mobile_sign_in_page)
        await expect(mobile_sign_in_page.get_by_role("button", name="Sync products")).to_be_visible()
        await mobile_sign_in_page.close()
        mobile_page, mobile_watch = await open_admin(phone, service)
        await expect(mobile_page.locator("#history-body tr.run-row")).to_have_count(3)
        await mobile_page.get_by_role("button", name=f"Details of run {run_ids[0]}").click()
        await expect(
            mobile_page.locator(f"#run-details-{run_ids[0]} table.item-errors tbody tr")
        ).to_have_count(len(api_errors))
        # Nothing wider than the phone: no sideways scrolling.
        overflow = await mobile_page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await mobile_page.screenshot(path=str(ARTIFACTS / "admin-page-mobile.png"), full_page=True)
        mobile_watch.assert_clean()
    finally:
        await phone.close()
    watch.assert_clean()


async def test_preview_shows_the_plan_the_schedule_and_a_chart_of_recent_runs(
    context: BrowserContext, start_service: StartService, feed: Feed
) -> None:
    service = await start_service(schedule="0 3 * * *", schedule_tz="Europe/Berlin")
    feed.count, feed.page_delay_s = 12, 0.02
    page, watch = await signed_in_page(context, service)
    await expect(page.locator("#schedule-line")).to_contain_text(
        "Runs start on the schedule 0 3 * * * (Europe/Berlin); the next is due"
    )
    sync_button = page.get_by_role("button", name="Sync products")
    preview_button = page.get_by_role("button", name="Preview changes")
    await sync_button.click()
    await expect(summary(page)).to_contain_text("Last sync succeeded", timeout=RUN_TIMEOUT_MS)
    prices_before = [tuple(row) for row in service.ledger("SELECT external_id, price_minor FROM products")]

    feed.price_bump = 1.0  # every price changes upstream
    await preview_button.click()
    plan = page.locator("#plan")
    await expect(plan).to_be_visible(timeout=RUN_TIMEOUT_MS)
    await expect(page.locator("#plan-summary")).to_contain_text("would create 0, update 12")
    rows = page.locator("#plan-body tr.plan-row")
    await expect(rows).to_have_count(12)
    await expect(rows.first.locator("td[data-label=Change]")).to_have_text("update")
    await expect(rows.first.locator("td[data-label=Fields]")).to_have_text("price")
    await expect(summary(page)).to_contain_text("Last preview (nothing written) finished")
    # Nothing was written: the catalog still has the old prices.
    assert [
        tuple(row) for row in service.ledger("SELECT external_id, price_minor FROM products")
    ] == prices_before
    newest = page.locator("#history-body tr.run-row").first
    await expect(newest.locator("td[data-label=Status]")).to_have_text("success dry run")

    # The chart: one duration bar per finished run; the sync's created bar, the preview's updated bar.
    await expect(page.locator("#chart-duration rect")).to_have_count(2)
    await expect(page.locator("#chart-counts rect.bar-created")).to_have_count(1)
    await expect(page.locator("#chart-counts rect.bar-updated.bar-dry")).to_have_count(1)
    tip = await page.locator("#chart-duration rect").last.locator("title").text_content()
    assert tip is not None and tip.startswith("Run #2 (dry run), success: ")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "admin-preview.png"), full_page=True)
    watch.assert_clean()  # the chart is drawn under the page's strict CSP


async def test_two_replicas_on_postgresql_show_the_one_run_wherever_it_was_started(
    context: BrowserContext, start_service: StartService, feed: Feed, postgres_url: str
) -> None:
    feed.count, feed.page_delay_s = 80, 1.0  # longer than the idle page's look every 5 s
    replicas = [await start_service(database_url=SecretStr(postgres_url)) for _ in range(2)]
    first, first_watch = await signed_in_page(context, replicas[0])
    # The session cookie is signed with a key derived from the token, which every replica holds: signed
    # in at one replica, the browser is signed in at the other (same host, so the same cookie).
    second, second_watch = await open_admin(context, replicas[1])
    await expect(second.get_by_role("button", name="Sync products")).to_be_visible()
    await expect(summary(second)).to_have_text("No sync has run yet.")
    pages = [(first, first_watch), (second, second_watch)]
    for page, _ in pages:
        await expect(page.locator("#sink-target")).to_have_text(
            re.compile(
                r"^Products go to the PostgreSQL catalog postgresql://\*\*\*@127\.0\.0\.1:\d+/t_\w+\.$"
            )
        )

    await first.get_by_role("button", name="Sync products").click()
    await expect(summary(first)).to_contain_text("Sync running since")
    # The other replica's page follows the run it did not start: its own button is held.
    await expect(summary(second)).to_contain_text("Sync running since", timeout=10_000)
    await expect(second.get_by_role("button", name="Sync products")).to_be_disabled()

    for page, _ in pages:
        await expect(summary(page)).to_contain_text("Last sync succeeded", timeout=RUN_TIMEOUT_MS)
        await expect(summary(page)).to_contain_text(f"{feed.count} created")
    assert [(await replica.status())["runId"] for replica in replicas] == [1, 1]
    first_watch.assert_clean()
    second_watch.assert_clean()
