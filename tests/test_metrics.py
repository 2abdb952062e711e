"""GET /metrics: Prometheus text, run and product counts read from the ledger, HTTP by route template."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.api.http_metrics import HttpMetrics
from service.api.keys import RUNNER
from service.app import create_app
from service.domain.outcomes import BatchCounts
from tests.conftest import AUTH, BOTH_BACKENDS, AiohttpClient, make_settings
from tests.jobs import ScriptedJob

Client = TestClient[web.Request, web.Application]
SOURCE = "http://127.0.0.1:9/"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: Client, headers: dict[str, str] | None = None) -> Samples:
    response = await client.get("/metrics", headers=headers or {})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def run_once(client: Client) -> None:
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    assert response.status == 200
    await client.app[RUNNER].wait()


@BOTH_BACKENDS
async def test_run_and_product_counts_come_from_the_ledger(
    aiohttp_client: AiohttpClient, tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    job = ScriptedJob(counts=BatchCounts(created=5, updated=2, unchanged=1, errors=1, categories_created=2))
    client = await aiohttp_client(
        create_app(make_settings(tmp_path, source_url=SOURCE, **store_settings), job=job)
    )
    empty = await scrape(client)
    assert value(empty, "product_sync_runs_total", outcome="success") == 0
    assert value(empty, "product_sync_run_in_progress") == 0
    assert ("product_sync_last_success_timestamp_seconds", ()) not in empty

    await run_once(client)
    await run_once(client)
    job.fail_with = "upstream answered 502"
    await run_once(client)

    samples = await scrape(client)
    assert value(samples, "product_sync_runs_total", outcome="success") == 2
    assert value(samples, "product_sync_runs_total", outcome="error") == 1
    assert value(samples, "product_sync_runs_total", outcome="cancelled") == 0
    # The failed run's committed batch counts too: those rows were written.
    assert value(samples, "product_sync_products_total", outcome="created") == 15
    assert value(samples, "product_sync_products_total", outcome="updated") == 6
    assert value(samples, "product_sync_products_total", outcome="unchanged") == 3
    assert value(samples, "product_sync_products_total", outcome="errors") == 3
    assert value(samples, "product_sync_categories_created_total") == 6
    assert value(samples, "product_sync_run_duration_seconds_count", outcome="success") == 2
    assert value(samples, "product_sync_run_duration_seconds_sum", outcome="success") >= 0
    assert value(samples, "product_sync_last_run_success") == 0
    assert value(samples, "product_sync_last_success_timestamp_seconds") > 1.7e9


@BOTH_BACKENDS
async def test_current_run_progress_is_visible_from_another_process_on_the_file(
    aiohttp_client: AiohttpClient, tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    job = ScriptedJob(counts=BatchCounts(created=3, processed=3, total=10), hold=asyncio.Event())
    settings = make_settings(tmp_path, source_url=SOURCE, **store_settings)
    owner = await aiohttp_client(create_app(settings, job=job))
    # Its own connections, owner lock and registry: like a second replica scraped separately.
    other = await aiohttp_client(create_app(settings, job=ScriptedJob()))
    await owner.post("/admin/sync/trigger", headers=AUTH)
    samples: Samples = {}
    for _ in range(200):
        samples = await scrape(other)
        if value(samples, "product_sync_run_processed_items") == 3:
            break
        await asyncio.sleep(0.01)
    assert value(samples, "product_sync_run_in_progress") == 1
    assert value(samples, "product_sync_run_processed_items") == 3
    assert value(samples, "product_sync_run_total_items") == 10
    assert value(samples, "product_sync_run_started_timestamp_seconds") > 1.7e9
    assert value(samples, "product_sync_products_total", outcome="created") == 3

    assert job.hold is not None
    job.hold.set()
    await owner.app[RUNNER].wait()
    after = await scrape(other)
    assert value(after, "product_sync_run_in_progress") == 0
    assert ("product_sync_run_total_items", ()) not in after
    assert value(after, "product_sync_runs_total", outcome="success") == 1


async def test_http_requests_are_labelled_by_route_template(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, source_url=SOURCE), job=ScriptedJob()))
    await run_once(client)
    for run_id in ("1", "424242", "not-a-number"):
        await client.get(f"/admin/sync/runs/{run_id}", headers=AUTH)
    await client.get("/admin/sync/status")  # 401
    await client.get("/no/such/path/8d1f")  # 404, unmatched
    await client.request("PURGE", "/health")  # 405 and an unusual method

    samples = await scrape(client)
    detail = "/admin/sync/runs/{run_id}"

    def requests(method: str, route: str, status: str) -> float:
        return value(samples, "product_sync_http_requests_total", method=method, route=route, status=status)

    assert requests("GET", detail, "200") == 1
    assert requests("GET", detail, "404") == 2
    assert requests("POST", "/admin/sync/trigger", "200") == 1
    assert requests("GET", "/admin/sync/status", "401") == 1
    assert requests("GET", "unmatched", "404") == 1
    assert requests("other", "unmatched", "405") == 1
    assert value(samples, "product_sync_http_request_duration_seconds_count", method="GET", route=detail) == 3
    routes = {dict(labels).get("route") for (name, labels) in samples if name.startswith("product_sync_http")}
    assert not any(route and ("424242" in route or "not-a-number" in route) for route in routes)


async def test_each_app_owns_its_registry(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    first = await aiohttp_client(create_app(make_settings(tmp_path, source_url=SOURCE), job=ScriptedJob()))
    second = await aiohttp_client(create_app(make_settings(tmp_path, source_url=SOURCE), job=ScriptedJob()))
    for _ in range(3):
        await first.get("/health")
    first_samples = await scrape(first)
    second_samples = await scrape(second)
    health = (
        "product_sync_http_requests_total",
        (("method", "GET"), ("route", "/health"), ("status", "200")),
    )
    assert first_samples[health] == 3
    assert health not in second_samples


async def test_metrics_are_open_by_default_and_can_require_a_token(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, source_url=SOURCE, metrics_require_auth=True)
    client = await aiohttp_client(create_app(settings, job=ScriptedJob()))
    response = await client.get("/metrics")
    assert response.status == 401
    assert await response.json() == {"status": "error", "message": "Unauthorized"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    samples = await scrape(client, AUTH)
    assert value(samples, "product_sync_runs_total", outcome="success") == 0


def test_http_metrics_expose_what_prometheus_client_would() -> None:
    # HttpMetrics keeps its own counts (no locks on the request path); scrapers must see the same
    # families, labels and bucket counts as prometheus_client's Counter and Histogram would give.
    ours = HttpMetrics()
    registry = CollectorRegistry()
    requests = Counter(
        "product_sync_http_requests", "requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "product_sync_http_request_duration_seconds", "latency", ["method", "route"], registry=registry
    )
    observations = [
        ("GET", "/admin/sync/status", 200, 0.0004),
        ("GET", "/admin/sync/status", 200, 0.005),  # exactly on a bucket's bound: counted in it
        ("GET", "/admin/sync/status", 401, 0.03),
        ("POST", "/admin/sync/trigger", 409, 2.6),
        ("BREW", "unmatched", 405, 11.0),  # past the last finite bound; an unknown method is "other"
    ]
    for method, route, status, seconds in observations:
        ours.observe(method, route, status, seconds)
        label = method if method != "BREW" else "other"
        requests.labels(label, route, str(status)).inc()
        latency.labels(label, route).observe(seconds)

    def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples
            if not (sample.name.endswith("_created") and "duration" in sample.name)
        }

    mine, theirs = samples(generate_latest(ours.registry)), samples(generate_latest(registry))
    assert set(mine) == set(theirs)
    for key, expected in theirs.items():
        if key[0].endswith("_created"):
            assert abs(mine[key] - expected) < 60  # when each label set was first counted
        else:
            assert mine[key] == pytest.approx(expected), key
    status_labels = (("method", "GET"), ("route", "/admin/sync/status"))
    assert mine[("product_sync_http_request_duration_seconds_bucket", (("le", "0.005"), *status_labels))] == 2
