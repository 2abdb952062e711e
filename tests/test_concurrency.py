"""200 simultaneous triggers on one real process: exactly one run starts, 199 get 409 with its startedAt.

(Two processes x 100 triggers on one file is in test_processes.py.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.catalog_checks import running_rows
from tests.conftest import AUTH
from tests.faults import Fault, FaultUpstream
from tests.reliability_report import ReliabilityReport
from tests.service_process import ServiceProcess
from tests.upstream import make_product


async def test_two_hundred_simultaneous_triggers_start_exactly_one_run(
    tmp_path: Path, reliability: ReliabilityReport
) -> None:
    upstream = FaultUpstream([make_product(i) for i in range(1, 195)]).start()
    upstream.inject(Fault.STALL_BEFORE_BODY, from_skip=50)  # holds the run after its first page
    service = ServiceProcess(tmp_path / "sync.db", upstream.products_url, tmp_path / "service.log")
    try:
        await service.start()
        url = f"{service.base_url}/admin/sync/trigger"
        connector = aiohttp.TCPConnector(limit=0)  # 200 connections at once, no client-side queue
        async with aiohttp.ClientSession(connector=connector, headers=AUTH) as session:

            async def trigger() -> tuple[int, dict[str, object]]:
                async with session.post(url) as response:
                    return response.status, await response.json()

            results = await asyncio.gather(*(trigger() for _ in range(200)))
        codes = [code for code, _ in results]
        assert codes.count(200) == 1 and codes.count(409) == 199, sorted(set(codes))
        winner = next(body for code, body in results if code == 200)["data"]
        assert isinstance(winner, dict)
        for code, body in results:
            if code == 409:
                assert body == {
                    "status": "error",
                    "message": "Sync job is already running",
                    "data": {"startedAt": winner["startedAt"], "runId": winner["runId"]},
                }
        assert running_rows(tmp_path / "sync.db") == 1
        upstream.heal()
        data = await service.wait_status(lambda d: not d["isRunning"])
        assert data["lastStatus"] == "success" and data["stats"]["created"] == 194
        reliability.fault("200 simultaneous triggers")
    finally:
        upstream.heal()
        await service.stop()
        upstream.stop()
