"""Run the real service as a child process (``python -m service serve``) and talk to it over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ADMIN_TOKEN, AUTH

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    def __init__(self, db_path: Path, source_url: str | None, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SYNC_")},
            "PYTHONPATH": str(REPO_ROOT),
            "SYNC_DB_PATH": str(db_path),
            "SYNC_PORT": str(self.port),
            "SYNC_ADMIN_TOKEN": ADMIN_TOKEN,
            "SYNC_PAGE_SIZE": "50",
            "SYNC_LOG_FORMAT": "json",
            "SYNC_WATCHDOG_INTERVAL_S": "0.1",
            **({"SYNC_SOURCE_URL": source_url} if source_url else {}),
            **env,
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "serve", env=self._env, cwd=REPO_ROOT, stdout=log, stderr=log
        )
        log.close()
        await self.wait_healthy()
        return self

    async def wait_healthy(self, timeout_s: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.process is not None and self.process.returncode is None, self.log_text()
                try:
                    async with session.get(f"{self.base_url}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"service did not become healthy:\n{self.log_text()}")
                await asyncio.sleep(0.05)

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        headers = kwargs.pop("headers", AUTH)
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.base_url}{path}", headers=headers, **kwargs) as response,
        ):
            return response.status, await response.json()

    async def status(self) -> dict[str, Any]:
        code, body = await self.request("GET", "/admin/sync/status")
        assert code == 200, body
        data: dict[str, Any] = body["data"]
        return data

    async def wait_status(self, predicate: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        data: dict[str, Any] = {}
        while asyncio.get_running_loop().time() < deadline:
            data = await self.status()
            if predicate(data):
                return data
            await asyncio.sleep(0.05)
        raise AssertionError(f"status never matched; last: {data}\n{self.log_text()}")

    def send_signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait_exit(self, timeout_s: float = 20.0) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout_s)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def ticks_taken_elsewhere(services: Sequence[ServiceProcess], claimed_by: Mapping[str, str]) -> int:
    """How many schedule ticks the services' logs say were claimed by another process; each must be in
    ``claimed_by`` (due time -> owner id, from ``schedule_ticks``) under another process's owner id."""
    taken = 0
    for service in services:
        assert service.process is not None
        pid = f".{service.process.pid}."  # owner ids are host.pid.nonce
        for line in service.log_text().splitlines():
            message = json.loads(line)["message"]
            if message.startswith("scheduled tick due at ") and "claimed by another process" in message:
                due = message.split()[4]
                assert due in claimed_by and pid not in claimed_by[due], (message, claimed_by.get(due))
                taken += 1
    return taken
