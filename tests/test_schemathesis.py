"""Property-based requests from the OpenAPI description against a real service process on loopback,
with and without a valid token: never a 5xx, every answer in its documented status, type and schema.

Uses the service's own ``/openapi.json`` when it serves one, else the hand-written tests/openapi_spec.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_TOKEN
from tests.faults import FaultUpstream
from tests.openapi_spec import build_spec
from tests.service_process import REPO_ROOT, free_port
from tests.upstream import make_product

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    upstream = FaultUpstream([make_product(i) for i in range(1, 60)]).start()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNC_")},
        "PYTHONPATH": str(REPO_ROOT),
        "SYNC_DB_PATH": str(workdir / "sync.db"),
        "SYNC_PORT": str(port),
        "SYNC_ADMIN_TOKEN": ADMIN_TOKEN,
        "SYNC_SOURCE_URL": upstream.products_url,
        "SYNC_LOG_FORMAT": "json",
    }
    with (workdir / "service.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], env=env, cwd=REPO_ROOT, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (workdir / "service.log").read_text()
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.05)
        yield url
        assert process.poll() is None, "the service died under schemathesis"
    finally:
        process.kill()
        process.wait()
        upstream.stop()


@pytest.fixture(scope="module")
def api_schema(base_url: str) -> Any:
    served = requests.get(f"{base_url}/openapi.json", timeout=5)
    raw = served.json() if served.status_code == 200 else build_spec()
    return schemathesis.openapi.from_dict(raw)


def exercise(api_schema: Any, base_url: str, headers: dict[str, str], max_examples: int = 25) -> int:
    """Generate requests for every operation and validate each answer; return how many were sent.

    (schemathesis' own pytest plugin does not run under this pytest version, so hypothesis drives it.)
    """
    sent = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            nonlocal sent
            if case.headers:
                case.headers.pop("Authorization", None)
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
            sent += 1

        check()
    return sent


@pytest.mark.slow
def test_api_with_a_valid_token_conforms(api_schema: Any, base_url: str) -> None:
    assert exercise(api_schema, base_url, {"Authorization": f"Bearer {ADMIN_TOKEN}"}) > 100


@pytest.mark.slow
def test_api_without_a_token_conforms(api_schema: Any, base_url: str) -> None:
    assert exercise(api_schema, base_url, {}) > 100


def test_the_spec_names_every_route(base_url: str) -> None:
    paths = set(build_spec()["paths"])
    assert {"/admin/sync/trigger", "/admin/sync/status", "/admin/sync/runs/{runId}"} <= paths
    assert Path(REPO_ROOT / "service").is_dir()
