"""The load part: N connections polling one URL for D seconds, with ``wrk`` or our aiohttp generator."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import orjson

from bench.procs import REPO_ROOT, BenchError, python_env

# wrk takes the Authorization header from the environment through this script, never from argv.
_WRK_SCRIPT = (
    'local auth = os.getenv("BENCH_AUTHORIZATION")\nif auth then wrk.headers["Authorization"] = auth end\n'
)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass(frozen=True)
class LoadFigures:
    tool: str
    requests: int
    seconds: float
    errors: int  # non-2xx answers and socket errors
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def load_tool() -> str:
    return "wrk" if shutil.which("wrk") else "aiohttp"


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise BenchError(f"unreadable wrk latency {value!r}")
    return float(match[1]) * _UNIT_MS[match[2]]


def _parse_wrk(output: str) -> LoadFigures:
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (done and p50 and p99):
        raise BenchError(f"unreadable wrk output:\n{output}")
    seconds = _ms(done[2] + done[3]) / 1000
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx[1])
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return LoadFigures("wrk", int(done[1]), seconds, errors, _ms(p50[1]), _ms(p99[1]))


def poll(url: str, authorization: str | None, connections: int = 50, seconds: float = 10.0) -> LoadFigures:
    """``connections`` clients polling ``url`` for ``seconds``; wrk with one thread when installed."""
    env = python_env({"BENCH_AUTHORIZATION": authorization} if authorization else {})
    if load_tool() == "wrk":
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(_WRK_SCRIPT)
        try:
            args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script.name, url]
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 60)
        finally:
            os.unlink(script.name)
        if done.returncode != 0:
            raise BenchError(f"wrk failed: {done.stderr.strip()}")
        return _parse_wrk(done.stdout)
    args = [
        sys.executable,
        "-m",
        "bench.loadgen",
        url,
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
    ]
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"load generator failed: {done.stderr.strip()[-500:]}")
    figures = orjson.loads(done.stdout)
    return LoadFigures(
        "aiohttp",
        int(figures["requests"]),
        float(figures["seconds"]),
        int(figures["errors"]),
        float(figures["p50_ms"]),
        float(figures["p99_ms"]),
    )


def bare_server_args(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.bare_server", "--port", str(port)]


def ensure_loopback(url: str) -> None:
    if not url.startswith(("http://127.0.0.1:", "http://[::1]:")):
        raise BenchError(f"refusing a non-loopback target: {url}")
