"""HTTP request metrics, counted by the edge middleware (``service.api.edge``), owned per application.

Routes are labelled by their template (``/admin/sync/runs/{run_id}``), never the raw path, so
cardinality stays bounded.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

PREFIX = "product_sync"
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
    request, which with the label lookups was a noticeable share of a status poll's CPU. Only the event
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
