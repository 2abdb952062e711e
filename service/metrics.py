"""Prometheus metrics, owned per application (no global registry).

Two sources, one exposition:
- HTTP requests, counted by the edge middleware (``service.api.edge``) into the app's own registry.
  Routes are labelled by their template (``/admin/sync/runs/{run_id}``), never the raw path, so
  cardinality stays bounded.
- Runs and products, read from the ledger at scrape time. Run status lives in SQLite, so these are right
  whichever process (service, second replica, ``product-sync sync``) did the work, and survive restarts.
  Totals come from ``run_totals`` (migration 0004), kept by a trigger as runs finish, so a scrape is a few
  index lookups however long the ledger is, and pruning old runs never lowers a counter.
"""

from __future__ import annotations

import math
import sqlite3
import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from service.ledger import queries
from service.ledger.db import Database
from service.timeutil import from_iso

PREFIX = "product_sync"
RUN_OUTCOMES = ("success", "error", "cancelled")
UNMATCHED_ROUTE = "unmatched"
# The classic text format: what generate_latest writes, and what every Prometheus version reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Upper bounds of the latency histogram's buckets: prometheus_client's defaults, +Inf last.
LATENCY_BUCKETS = Histogram.DEFAULT_BUCKETS
_BUCKET_NAMES = tuple("+Inf" if math.isinf(bound) else repr(float(bound)) for bound in LATENCY_BUCKETS)


class _Latencies:
    """One label set's histogram: a count per bucket (not yet cumulative), and the sum."""

    __slots__ = ("counts", "total_seconds")

    def __init__(self) -> None:
        self.counts = [0] * len(LATENCY_BUCKETS)
        self.total_seconds = 0.0


class HttpMetrics:
    """Request counts and latencies, in plain dicts the app owns, exposed through its own registry.

    Not prometheus_client's Counter and Histogram: they take a lock on every increment, three per
    request, and with the label lookups that was about a tenth of a status poll's CPU. Only the event
    loop's thread records and collects (the middleware and the /metrics handler), so no lock is needed.
    """

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latencies: dict[tuple[str, str], _Latencies] = {}
        self._created: dict[tuple[str, str, int], float] = {}  # when each counter was first incremented
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _KNOWN_METHODS else "other"
        key = (method, route, status)
        count = self._requests.get(key)
        if count is None:
            self._created[key] = time.time()
            count = 0
        self._requests[key] = count + 1
        latencies = self._latencies.get((method, route))
        if latencies is None:
            latencies = self._latencies[(method, route)] = _Latencies()
        latencies.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latencies.total_seconds += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by method, route template and status code",
            labels=["method", "route", "status"],
        )
        for key, count in self._requests.items():
            method, route, status = key
            requests.add_metric((method, route, str(status)), count, created=self._created[key])
        yield requests
        latency = HistogramMetricFamily(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template",
            labels=["method", "route"],
        )
        for (method, route), latencies in self._latencies.items():
            latency.add_metric(
                (method, route),
                list(zip(_BUCKET_NAMES, accumulate(latencies.counts), strict=True)),
                latencies.total_seconds,
            )
        yield latency


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


# --- ledger-derived metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeTotals:
    runs: int
    created: int
    updated: int
    unchanged: int
    errors: int
    categories_created: int
    duration_s: float


@dataclass(frozen=True)
class CurrentRun:
    processed: int
    total: int | None
    started_at: str


@dataclass(frozen=True)
class LedgerSnapshot:
    totals: Mapping[str, OutcomeTotals]  # finished runs by outcome, plus "running": its committed batches
    running: CurrentRun | None
    last_finished_status: str | None
    last_finished_at: str | None
    last_duration_s: float | None
    last_success_at: str | None


async def read_ledger_snapshot(database: Database) -> LedgerSnapshot:
    totals: dict[str, OutcomeTotals] = {}
    running: CurrentRun | None = None
    last: sqlite3.Row | None = None
    last_success_at: str | None = None
    for row in await database.fetch_all(queries.LEDGER_METRICS):
        kind = row["kind"]
        if kind == "total":
            totals[row["status"]] = OutcomeTotals(
                runs=int(row["runs"]),
                created=int(row["created"]),
                updated=int(row["updated"]),
                unchanged=int(row["unchanged"]),
                errors=int(row["errors"]),
                categories_created=int(row["categories_created"]),
                duration_s=float(row["duration_s"]),
            )
        elif kind == "running":
            running = CurrentRun(int(row["processed"]), row["total"], row["started_at"])
            totals["running"] = OutcomeTotals(
                runs=1,
                created=int(row["created"]),
                updated=int(row["updated"]),
                unchanged=int(row["unchanged"]),
                errors=int(row["errors"]),
                categories_created=int(row["categories_created"]),
                duration_s=0.0,
            )
        elif kind == "last_finished":
            last = row
        elif kind == "last_success":
            last_success_at = row["finished_at"]
    return LedgerSnapshot(
        totals=totals,
        running=running,
        last_finished_status=last["status"] if last else None,
        last_finished_at=last["finished_at"] if last else None,
        last_duration_s=last["duration_s"] if last else None,
        last_success_at=last_success_at,
    )


def _epoch(iso: str) -> float:
    return from_iso(iso).timestamp()


class LedgerCollector:
    """Turns one snapshot into metric families; built per scrape, so no state is shared between scrapes."""

    def __init__(self, snapshot: LedgerSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        zero = OutcomeTotals(0, 0, 0, 0, 0, 0, 0.0)
        runs = CounterMetricFamily(
            f"{PREFIX}_runs", "Finished sync runs by outcome (from the ledger)", labels=["outcome"]
        )
        durations = SummaryMetricFamily(
            f"{PREFIX}_run_duration_seconds", "Duration of finished sync runs by outcome", labels=["outcome"]
        )
        for outcome in RUN_OUTCOMES:
            totals = snap.totals.get(outcome, zero)
            runs.add_metric([outcome], totals.runs)
            durations.add_metric([outcome], count_value=totals.runs, sum_value=totals.duration_s)
        yield runs
        yield durations

        products = CounterMetricFamily(
            f"{PREFIX}_products",
            "Catalog items processed by outcome, over all runs (committed batches of a running run included)",
            labels=["outcome"],
        )
        for outcome in ("created", "updated", "unchanged", "errors"):
            products.add_metric([outcome], sum(getattr(t, outcome) for t in snap.totals.values()))
        yield products
        yield CounterMetricFamily(
            f"{PREFIX}_categories_created",
            "Categories created by sync runs",
            value=sum(t.categories_created for t in snap.totals.values()),
        )

        yield from self._current_run()
        yield from self._last_run()

    def _current_run(self) -> Iterator[Metric]:
        running = self._snapshot.running
        yield GaugeMetricFamily(
            f"{PREFIX}_run_in_progress", "1 while a sync run is in progress", value=int(running is not None)
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_run_processed_items",
            "Items processed so far by the run in progress (0 when none)",
            value=running.processed if running else 0,
        )
        if running is not None:
            if running.total is not None:
                yield GaugeMetricFamily(
                    f"{PREFIX}_run_total_items",
                    "Items the feed announced for the run in progress",
                    value=running.total,
                )
            yield GaugeMetricFamily(
                f"{PREFIX}_run_started_timestamp_seconds",
                "Start of the run in progress (Unix time)",
                value=_epoch(running.started_at),
            )

    def _last_run(self) -> Iterator[Metric]:
        snap = self._snapshot
        if snap.last_finished_at is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_run_finished_timestamp_seconds",
                "End of the last finished run (Unix time)",
                value=_epoch(snap.last_finished_at),
            )
            yield GaugeMetricFamily(
                f"{PREFIX}_last_run_success",
                "1 when the last finished run succeeded, 0 otherwise",
                value=int(snap.last_finished_status == "success"),
            )
        if snap.last_duration_s is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_run_duration_seconds",
                "Duration of the last finished run",
                value=snap.last_duration_s,
            )
        if snap.last_success_at is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_success_timestamp_seconds",
                "End of the last successful run (Unix time); alert when it gets old",
                value=_epoch(snap.last_success_at),
            )


async def render_metrics(http: HttpMetrics, database: Database) -> bytes:
    snapshot = await read_ledger_snapshot(database)
    return generate_latest(LedgerCollector(snapshot)) + generate_latest(http.registry)
