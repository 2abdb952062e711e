"""Logs: one JSON object per line, the run id on every line of a run, the contract's outcome lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.api.keys import RUNNER
from service.app import create_app
from service.support.logs import build_handler
from service.sync.runner import FAILURE_PREFIX, SUCCESS_LINE
from tests.conftest import ADMIN_TOKEN, AUTH, AiohttpClient, make_settings
from tests.jobs import ScriptedJob


@pytest.fixture
def json_log(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """The service's JSON handler on the root logger, writing into a buffer."""
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = build_handler(stream, use_json=True)
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is exactly one JSON object


async def test_each_run_logs_its_id_on_every_line_and_the_contract_lines(
    aiohttp_client: AiohttpClient, tmp_path: Path, json_log: io.StringIO
) -> None:
    job = ScriptedJob()
    client = await aiohttp_client(
        create_app(make_settings(tmp_path, source_url="http://127.0.0.1:9/"), job=job)
    )
    first = (await (await client.post("/admin/sync/trigger", headers=AUTH)).json())["data"]["runId"]
    await client.app[RUNNER].wait()
    job.fail_with = "Network timeout"
    second = (await (await client.post("/admin/sync/trigger", headers=AUTH)).json())["data"]["runId"]
    await client.app[RUNNER].wait()

    logged = entries(json_log)
    runner_lines = [e for e in logged if e["logger"] == "service.sync.runner"]
    assert {e.get("run_id") for e in runner_lines} == {first, second}
    success = [e for e in logged if e["message"] == SUCCESS_LINE]
    assert [(e["run_id"], e["level"]) for e in success] == [(first, "info")]
    failure = [e for e in logged if e["message"].startswith(FAILURE_PREFIX)]
    assert [(e["run_id"], e["level"], e["message"]) for e in failure] == [
        (second, "error", "❌ Manual sync failed: Network timeout")
    ]
    started = [e for e in logged if e["message"].startswith("sync run ")]
    assert [e["run_id"] for e in started] == [first, second]
    for entry in logged:
        assert entry["time"].endswith("Z") and entry["level"] in {"debug", "info", "warning", "error"}
    assert ADMIN_TOKEN not in json_log.getvalue()


async def test_lines_outside_a_run_carry_no_run_id(
    aiohttp_client: AiohttpClient, tmp_path: Path, json_log: io.StringIO
) -> None:
    await aiohttp_client(
        create_app(make_settings(tmp_path, source_url="http://127.0.0.1:9/"), job=ScriptedJob())
    )
    logging.getLogger("service.test").info("outside any run")
    (entry,) = [e for e in entries(json_log) if e["message"] == "outside any run"]
    assert "run_id" not in entry
