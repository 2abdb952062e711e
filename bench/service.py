"""The service under test, in its own process, driven over its HTTP API like an admin would."""

from __future__ import annotations

import contextlib
import http.client
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.procs import (
    LOOPBACK,
    BenchError,
    child,
    children_peak_rss_mib,
    free_port,
    peak_rss_mib,
    python_env,
    tree_cpu_seconds,
)


@dataclass(frozen=True)
class SyncResult:
    run_id: int
    status: str
    seconds: float  # wall time from the trigger's answer to the first status poll that saw it finished
    ledger_seconds: float | None  # the run's duration as the ledger recorded it
    stats: dict[str, int]
    processed: int
    cpu_seconds: float  # service process and its workers, during the run
    peak_rss_mib: float  # service process, VmHWM
    worker_peak_rss_mib: float  # the largest child process of the service (0 when it has none)

    @property
    def per_second(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0


class ServiceClient:
    """One keep-alive connection to the service, with the bench's own admin token."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)

    def request(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        self._conn.request(method, path, body=b"" if method == "POST" else None, headers=self._headers)
        resp = self._conn.getresponse()
        body: dict[str, Any] = orjson.loads(resp.read())
        return resp.status, body

    def status(self) -> dict[str, Any]:
        code, body = self.request("GET", "/admin/sync/status")
        if code != 200:
            raise BenchError(f"status answered {code}: {body}")
        data: dict[str, Any] = body["data"]
        return data

    def trigger(self) -> int:
        code, body = self.request("POST", "/admin/sync/trigger")
        if code != 200:
            raise BenchError(f"trigger answered {code}: {body.get('message')}")
        run_id: int = body["data"]["runId"]
        return run_id

    def wait_finished(self, run_id: int, timeout_s: float, poll_s: float = 0.02) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = self.status()
            if data["runId"] == run_id and not data["isRunning"]:
                return data
            time.sleep(poll_s)
        raise BenchError(f"run {run_id} did not finish within {timeout_s:g} s")

    def close(self) -> None:
        self._conn.close()


@dataclass
class RunningService:
    pid: int
    port: int
    client: ServiceClient
    token: str

    def sync(self, timeout_s: float = 1800.0) -> SyncResult:
        cpu_before = tree_cpu_seconds(self.pid)
        started = time.perf_counter()
        run_id = self.client.trigger()
        data = self.client.wait_finished(run_id, timeout_s)
        seconds = time.perf_counter() - started
        cpu = tree_cpu_seconds(self.pid) - cpu_before
        if data["lastStatus"] != "success":
            raise BenchError(f"run {run_id} ended {data['lastStatus']}: {data['lastError']}")
        return SyncResult(
            run_id=run_id,
            status=data["lastStatus"],
            seconds=seconds,
            ledger_seconds=data["lastDuration"],
            stats=dict(data["stats"]),
            processed=int(data["progress"]["processed"]) if data["progress"] else 0,
            cpu_seconds=cpu,
            peak_rss_mib=peak_rss_mib(self.pid),
            worker_peak_rss_mib=children_peak_rss_mib(self.pid),
        )


@contextlib.contextmanager
def service(db_path: Path, source_url: str, log_path: Path, **settings: str) -> Iterator[RunningService]:
    """``python -m service serve`` on a free loopback port, syncing from ``source_url`` (NDJSON)."""
    port = free_port()
    token = secrets.token_urlsafe(24)  # never printed
    env = python_env(
        {
            "SYNC_HOST": LOOPBACK,
            "SYNC_PORT": str(port),
            "SYNC_DB_PATH": str(db_path),
            "SYNC_ADMIN_TOKEN": token,
            "SYNC_SOURCE_URL": source_url,
            "SYNC_SOURCE_FORMAT": "ndjson",
            "SYNC_LOG_LEVEL": "WARNING",
            "SYNC_LOG_FORMAT": "text",
            **{f"SYNC_{name.upper()}": value for name, value in settings.items()},
        }
    )
    args = [sys.executable, "-m", "service", "serve"]
    with child(args, f"http://{LOOPBACK}:{port}/health", env, log_path) as proc:
        client = ServiceClient(port, token)
        try:
            yield RunningService(proc.pid, port, client, token)
        finally:
            client.close()
