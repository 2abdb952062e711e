"""HTTP side of scripts/container-smoke.sh, standard library only (runs on the host's python3).

    container_smoke_client.py health BASE_URL           exit 0 when GET /health answers 200
    container_smoke_client.py sync BASE_URL TIMEOUT_S   trigger a sync, poll the status until the run ends
    container_smoke_client.py start BASE_URL TIMEOUT_S  trigger a sync, poll until it has made progress

``sync`` and ``start`` print ``key=value`` lines for the shell to assert on; on a protocol failure it prints
``error=...`` and exits 1. The admin token comes from SMOKE_TOKEN (environment, never argv) and is
never printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

FINISHED_STATUSES = {"success", "error", "cancelled"}
POLL_INTERVAL_S = 0.2


class SmokeFailure(Exception):
    """The service answered something the smoke test does not accept."""


def call(method: str, url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    request.add_header("Authorization", "Bearer " + os.environ["SMOKE_TOKEN"])
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def check_health(base_url: str) -> None:
    try:
        status, body = call("GET", base_url + "/health")
    except OSError as error:
        raise SmokeFailure(f"GET /health: {error}") from None
    if status != 200:
        raise SmokeFailure(f"GET /health answered {status}: {body}")
    print(f"health={json.dumps(body)}")


def trigger(base_url: str) -> None:
    status, body = call("GET", base_url + "/admin/sync/status")
    if status != 200:
        raise SmokeFailure(f"status before trigger answered {status}: {body}")
    status, body = call("POST", base_url + "/admin/sync/trigger")
    if status != 200 or body.get("message") != "Sync job triggered successfully":
        raise SmokeFailure(f"trigger answered {status}: {body}")
    print(f"triggeredRunId={body['data']['runId']}")
    print(f"startedAt={body['data']['startedAt']}")


def poll_status(base_url: str, timeout_s: float) -> Iterator[dict[str, Any]]:
    """Each status answer's data, every POLL_INTERVAL_S, until the caller stops or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = call("GET", base_url + "/admin/sync/status")
        if status != 200:
            raise SmokeFailure(f"status answered {status}: {body}")
        data: dict[str, Any] = body["data"]
        yield data
        if time.monotonic() > deadline:
            raise SmokeFailure(f"no expected status within {timeout_s}s; last: {data}")
        time.sleep(POLL_INTERVAL_S)


def trigger_and_wait_for_progress(base_url: str, timeout_s: float) -> None:
    trigger(base_url)
    for data in poll_status(base_url, timeout_s):
        if not data["isRunning"]:
            raise SmokeFailure(f"the run ended before it could be interrupted: {data['lastStatus']}")
        if data["progress"] and data["progress"]["processed"] > 0:
            break
    print(f"runId={data['runId']}")
    print(f"processed={data['progress']['processed']}")
    print(f"total={data['progress']['total']}")


def trigger_and_wait(base_url: str, timeout_s: float) -> None:
    trigger(base_url)
    for data in poll_status(base_url, timeout_s):
        if data["lastStatus"] in FINISHED_STATUSES:
            break
    for key in ("lastStatus", "lastError", "runId", "lastDuration", "triggeredBy"):
        print(f"{key}={data[key]}")
    print(f"isRunning={json.dumps(data['isRunning'])}")
    print(f"created={data['stats']['created']}")


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["health"] and len(argv) == 2:
            check_health(argv[1])
        elif argv[:1] == ["sync"] and len(argv) == 3:
            trigger_and_wait(argv[1], float(argv[2]))
        elif argv[:1] == ["start"] and len(argv) == 3:
            trigger_and_wait_for_progress(argv[1], float(argv[2]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except SmokeFailure as failure:
        print(f"error={failure}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
