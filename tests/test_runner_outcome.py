"""Only the job is ever cancelled: a stop that arrives while the outcome is being recorded waits for it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from service.api.keys import RUNNER
from service.app import create_app
from service.sync.job import RunContext
from tests.conftest import AUTH, AiohttpClient, make_settings


async def test_shutdown_racing_the_outcome_record_keeps_the_real_outcome(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    closing: list[asyncio.Task[None]] = []
    settings = make_settings(tmp_path, source_url="http://127.0.0.1:9/")

    async def job_then_shutdown(ctx: RunContext) -> None:
        # The shutdown starts the moment the job has returned, while the runner writes the outcome.
        closing.append(asyncio.get_running_loop().create_task(client.app[RUNNER].close()))

    client = await aiohttp_client(create_app(settings, job=job_then_shutdown))
    response = await client.post("/admin/sync/trigger", headers=AUTH)
    run_id = (await response.json())["data"]["runId"]
    for _ in range(500):
        if closing:
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(closing[0], 5)  # raised CancelledError when the outcome write was cancelled
    with sqlite3.connect(settings.db_path) as conn:
        row = conn.execute("SELECT status, error_message FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert row == ("success", None)
