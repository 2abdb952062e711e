"""The /metrics exposition: runs and products from the ledger's snapshot, then the HTTP metrics."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from service.api.http_metrics import PREFIX, HttpMetrics
from service.ledger.snapshot import LedgerSnapshot, OutcomeTotals
from service.support.timeutil import from_iso

RUN_OUTCOMES = ("success", "error", "cancelled")
TICK_OUTCOMES = ("started", "skipped")


@dataclass(frozen=True)
class ScheduleFigures:
    next_run_at: datetime
    ticks: Mapping[str, int]  # claimed ticks by outcome, from the ledger (every process's)


def _epoch(iso: str) -> float:
    return from_iso(iso).timestamp()


class LedgerCollector:
    """Turns one snapshot into metric families; built per scrape, so no state is shared between scrapes."""

    def __init__(self, snapshot: LedgerSnapshot, schedule: ScheduleFigures | None = None) -> None:
        self._snapshot = snapshot
        self._schedule = schedule

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
        yield from self._schedule_figures()

    def _schedule_figures(self) -> Iterator[Metric]:
        if self._schedule is None:
            return
        yield GaugeMetricFamily(
            f"{PREFIX}_schedule_next_run_timestamp_seconds",
            "When the schedule's next run is due (Unix time)",
            value=self._schedule.next_run_at.timestamp(),
        )
        ticks = CounterMetricFamily(
            f"{PREFIX}_schedule_ticks",
            "Schedule ticks by outcome: started a run, or skipped because one was in progress",
            labels=["outcome"],
        )
        for outcome in TICK_OUTCOMES:
            ticks.add_metric([outcome], self._schedule.ticks.get(outcome, 0))
        yield ticks

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


def render_metrics(
    http: HttpMetrics, snapshot: LedgerSnapshot, schedule: ScheduleFigures | None = None
) -> bytes:
    """The ledger's families, then the HTTP ones, in Prometheus' classic text format."""
    return generate_latest(LedgerCollector(snapshot, schedule)) + generate_latest(http.registry)
