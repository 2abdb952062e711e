"""A SIGKILLed service takes its mapping workers, fork server and resource tracker with it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from service.demo_upstream.products import demo_product
from tests.conftest import AiohttpServer
from tests.service_process import ServiceProcess

BATCH_SIZE = 100
# More than one chunk: the run maps and commits its first chunk in the workers before the feed is held.
FIRST_PART = 150
FEED_LENGTH = 300
# How long the helpers may take to notice the service is gone.
EXIT_TIMEOUT_S = 10.0


@dataclass
class NdjsonFeed:
    """An NDJSON feed without X-Total-Count (so the service maps it in its worker processes)."""

    url: str = ""
    # When set to an unset Event, the lines after FIRST_PART wait for it.
    gate: asyncio.Event | None = None
    lines: list[bytes] = field(
        default_factory=lambda: [
            orjson.dumps(demo_product(index), option=orjson.OPT_APPEND_NEWLINE)
            for index in range(FEED_LENGTH)
        ]
    )


@pytest.fixture
async def ndjson_feed(aiohttp_server: AiohttpServer) -> AsyncIterator[NdjsonFeed]:
    feed = NdjsonFeed()

    async def products(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(b"".join(feed.lines[:FIRST_PART]))
        if feed.gate is not None:
            await feed.gate.wait()
        await response.write(b"".join(feed.lines[FIRST_PART:]))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/products.ndjson", products)
    server = await aiohttp_server(app, host="127.0.0.1")
    feed.url = str(server.make_url("/products.ndjson"))
    yield feed
    if feed.gate is not None:
        feed.gate.set()  # lets a held response end, so the server shuts down without waiting on it


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    # The start time tells this process apart from a later one given the same pid.
    started: str
    cmdline: str


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _processes() -> list[Proc]:
    found: list[Proc] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields is not None:
            found.append(Proc(int(entry.name), int(fields[1]), fields[19], cmdline.strip()))
    return found


def descendants(root: int) -> list[Proc]:
    processes = _processes()
    found: list[Proc] = []
    parents = {root}
    while children := [proc for proc in processes if proc.ppid in parents and proc not in found]:
        found += children
        parents = {proc.pid for proc in children}
    return found


def alive(proc: Proc) -> bool:
    fields = _stat(proc.pid)
    # A zombie has exited: only its reaping is left, to whichever process it was reparented to.
    return fields is not None and fields[19] == proc.started and fields[0] != "Z"


async def wait_gone(procs: list[Proc], timeout_s: float) -> list[Proc]:
    """The processes still alive after ``timeout_s`` (none as soon as they are all gone)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        survivors = [proc for proc in procs if alive(proc)]
        if not survivors or asyncio.get_running_loop().time() > deadline:
            return survivors
        await asyncio.sleep(0.05)


def running_with_a_committed_chunk(data: dict[str, object]) -> bool:
    stats = data["stats"]
    assert isinstance(stats, dict)
    return data["isRunning"] is True and stats["created"] >= BATCH_SIZE


@pytest.mark.parametrize("moment", ["after_a_large_sync", "during_a_large_sync"])
async def test_sigkill_of_the_service_takes_every_helper_process_with_it(
    ndjson_feed: NdjsonFeed, tmp_path: Path, moment: str
) -> None:
    if moment == "during_a_large_sync":
        ndjson_feed.gate = asyncio.Event()
    service = ServiceProcess(
        tmp_path / "sync.db",
        ndjson_feed.url,
        tmp_path / "service.log",
        SYNC_SOURCE_FORMAT="ndjson",
        SYNC_BATCH_SIZE=str(BATCH_SIZE),
        SYNC_MAPPING_WORKERS="2",
    )
    helpers: list[Proc] = []
    try:
        await service.start()
        assert service.process is not None
        code, body = await service.request("POST", "/admin/sync/trigger")
        assert code == 200, body
        run_id = body["data"]["runId"]
        if moment == "during_a_large_sync":
            await service.wait_status(running_with_a_committed_chunk)
        else:
            data = await service.wait_status(lambda d: d["isRunning"] is False and d["runId"] == run_id)
            assert data["lastStatus"] == "success", data
            assert data["stats"]["created"] == FEED_LENGTH

        pid = service.process.pid
        helpers = descendants(pid)
        servers = [proc for proc in helpers if proc.ppid == pid and "forkserver" in proc.cmdline]
        trackers = [proc for proc in helpers if proc.ppid == pid and "resource_tracker" in proc.cmdline]
        workers = [proc for proc in helpers if proc.ppid in {server.pid for server in servers}]
        assert (len(servers), len(trackers), len(workers)) == (1, 1, 2), helpers

        service.send_signal(signal.SIGKILL)
        assert await service.wait_exit() == -signal.SIGKILL
        survivors = await wait_gone(helpers, EXIT_TIMEOUT_S)
        assert not survivors, f"alive {EXIT_TIMEOUT_S} s after the service's SIGKILL: " + "; ".join(
            f"{proc.pid} (parent {proc.ppid}): {proc.cmdline}" for proc in survivors
        )
    finally:
        await service.stop()
        for proc in helpers:
            if alive(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
