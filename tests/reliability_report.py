"""Figures of the fault, crash and disk suites, printed at the end of the pytest run.

Tests add to the counters through the ``reliability`` fixture; the totals are printed by
``pytest_terminal_summary`` (only when a reliability test ran). Registered from conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

_REPORT_KEY = pytest.StashKey["ReliabilityReport"]()


@dataclass
class ReliabilityReport:
    faults_tried: set[str] = field(default_factory=set)
    runs_failed_cleanly: int = 0
    runs_interrupted: int = 0
    runs_recovered: int = 0
    recoveries_succeeded: int = 0
    integrity_checks_passed: int = 0
    ledger_catalog_checks_passed: int = 0
    items_lost: int = 0
    max_status_latency_ms: float = 0.0
    max_median_latency_ms: float = 0.0
    max_peak_rss_mib: float = 0.0

    def fault(self, name: str) -> None:
        self.faults_tried.add(name)

    def latency(self, slowest_ms: float, median_ms: float) -> None:
        self.max_status_latency_ms = max(self.max_status_latency_ms, slowest_ms)
        self.max_median_latency_ms = max(self.max_median_latency_ms, median_ms)

    def peak_rss(self, mib: float) -> None:
        self.max_peak_rss_mib = max(self.max_peak_rss_mib, mib)

    @property
    def used(self) -> bool:
        return bool(self.faults_tried or self.runs_interrupted or self.integrity_checks_passed)

    def lines(self) -> list[str]:
        return [
            f"faults tried: {len(self.faults_tried)}",
            f"runs failed with a clear message: {self.runs_failed_cleanly}",
            f"runs interrupted (SIGKILL/SIGTERM): {self.runs_interrupted}",
            f"interrupted runs recovered on restart: {self.runs_recovered}",
            f"next runs succeeded after the fault healed: {self.recoveries_succeeded}",
            f"integrity checks passed: {self.integrity_checks_passed}",
            f"ledger == catalog checks passed: {self.ledger_catalog_checks_passed}",
            f"status answer during a fault: median ≤ {self.max_median_latency_ms:.1f} ms,"
            f" slowest {self.max_status_latency_ms:.1f} ms",
            f"highest peak RSS of the service during a fault: {self.max_peak_rss_mib:.0f} MiB",
            f"items lost: {self.items_lost}",
        ]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORT_KEY] = ReliabilityReport()


@pytest.fixture(scope="session")
def reliability(pytestconfig: pytest.Config) -> ReliabilityReport:
    return pytestconfig.stash[_REPORT_KEY]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT_KEY, None)
    if report is None or not report.used:
        return
    terminalreporter.section("reliability summary")
    for line in report.lines():
        terminalreporter.write_line(line)
