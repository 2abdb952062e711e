"""Child processes of the benchmark (upstream, service, bare handler) and their memory figures."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).absolute().parent.parent
LOOPBACK = "127.0.0.1"


class BenchError(Exception):
    """A benchmark step could not be carried out (a process did not start, a sync failed...)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for our Python children: this checkout's code first, no stray SYNC_ settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SYNC_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra or {})
    return env


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{proc.args!r} exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise BenchError(f"{url} did not answer within {timeout_s:g} s")


@contextlib.contextmanager
def child(
    args: list[str], ready_url: str, env: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child until the block ends; it must answer ``ready_url`` first. Output goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(ready_url, proc)
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def upstream(
    feed: Path, port: int, log_path: Path, *, page_delay_ms: float = 0.0, chunk_delay_ms: float = 0.0
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """The built-in demo upstream in its own process, serving ``feed`` as /products.ndjson and as
    DummyJSON pages at /products, each page (and NDJSON block) held for its delay."""
    args = [
        sys.executable,
        "-m",
        "service.demo_upstream",
        "--port",
        str(port),
        "--ndjson-file",
        str(feed),
        "--page-delay-ms",
        str(page_delay_ms),
        "--chunk-delay-ms",
        str(chunk_delay_ms),
    ]
    return child(args, f"http://{LOOPBACK}:{port}/products?limit=1", python_env(), log_path)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field} for process {pid}")


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process has had since it started (or since reset)."""
    return _status_kib(pid, "VmHWM") / 1024


def _stat_seconds(pid: int, first: int, stop: int) -> float:
    """The sum of fields ``first`` to ``stop`` of /proc/PID/stat (after the command name), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[first:stop]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the process and of the children it has reaped."""
    return _stat_seconds(pid, 11, 15)


def own_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the process alone, without any child's."""
    return _stat_seconds(pid, 11, 13)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of the process and all its descendants, live or reaped (e.g. a sync's worker process)."""
    total = cpu_seconds(pid)
    for kid in children_of(pid):
        with contextlib.suppress(OSError):
            total += tree_cpu_seconds(kid)
    return total


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.extend(int(part) for part in (task / "children").read_text().split())
    return found


def children_peak_rss_mib(pid: int) -> float:
    """The largest VmHWM among the process's live descendants (a fork server, a worker process)."""
    peaks = [0.0]
    for kid in children_of(pid):
        with contextlib.suppress(OSError, BenchError):
            peaks.extend([peak_rss_mib(kid), children_peak_rss_mib(kid)])
    return max(peaks)
