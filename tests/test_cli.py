"""``python -m service`` as real subprocesses, against a real upstream and real database files."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import sqlite3
import struct
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.cli.main import main, migrate, sync
from service.database.migrations import load_migrations
from service.database.sqlite import SqliteDatabase
from service.settings import DEFAULT_MIGRATIONS_DIR, Settings
from service.sync.runner import FAILURE_PREFIX, SUCCESS_LINE
from tests.ledger_rows import insert_finished_run, query
from tests.service_process import REPO_ROOT, ServiceProcess
from tests.upstream import FeedControl

EXIT_ALREADY_RUNNING = 3
DEVNULL = asyncio.subprocess.DEVNULL


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def log_entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.splitlines() if line.strip()]


def cli_env(db_path: Path, source_url: str | None = None, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNC_")},
        "PYTHONPATH": str(REPO_ROOT),
        "SYNC_DB_PATH": str(db_path),
        "SYNC_PAGE_SIZE": "50",
        "SYNC_RETRY_BASE_DELAY_S": "0.01",
        "SYNC_RETRY_MAX_DELAY_S": "0.05",
        "SYNC_WATCHDOG_INTERVAL_S": "0.1",
        **({"SYNC_SOURCE_URL": source_url} if source_url else {}),
        **extra,
    }


async def start_cli(*args: str, env: dict[str, str], stdout: int = asyncio.subprocess.PIPE) -> Any:
    command = [sys.executable, "-m", "service", *args]
    return await asyncio.create_subprocess_exec(
        *command, env=env, cwd=REPO_ROOT, stdout=stdout, stderr=asyncio.subprocess.PIPE, stdin=DEVNULL
    )


async def finish(process: Any, timeout_s: float = 60) -> Result:
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    return Result(process.returncode, (stdout or b"").decode(), stderr.decode())


async def run_cli(*args: str, env: dict[str, str]) -> Result:
    return await finish(await start_cli(*args, env=env))


async def wait_for_running_row(db_path: Path, processed: int = 50, timeout_s: float = 30) -> int:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):  # the file or table may not exist yet
            rows = query(db_path, "SELECT id, processed FROM runs WHERE status = 'running'")
            if rows and rows[0][1] >= processed:
                return int(rows[0][0])
        await asyncio.sleep(0.05)
    raise AssertionError("no run got going")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


async def test_sync_succeeds_prints_counts_and_logs_json_lines(upstream_url: str, db_path: Path) -> None:
    result = await run_cli("sync", env=cli_env(db_path, upstream_url))
    assert result.code == 0, result
    summary = r"^run 1 success in \d+\.\d\d s: created 194, updated 0, unchanged 0, errors 0"
    assert re.search(summary, result.stdout, re.MULTILINE), result.stdout
    (row,) = query(db_path, "SELECT status, triggered_by, created, started_via FROM runs")
    assert row[0] == "success" and row[1].startswith("cli:") and row[2] == 194 and row[3] == "cli"
    assert query(db_path, "SELECT count(*) FROM products") == [(194,)]

    logged = result.log_entries()  # stderr is not a terminal: one JSON object per line
    assert [e["run_id"] for e in logged if e["message"] == SUCCESS_LINE] == [1]
    assert {e.get("run_id") for e in logged if e["logger"].startswith("service.sync")} == {1}

    again = await run_cli("sync", env=cli_env(db_path, upstream_url))
    assert again.code == 0
    assert "run 2 success" in again.stdout and "created 0, updated 0, unchanged 194" in again.stdout


async def test_sync_failure_exits_1_with_the_reason(upstream_url: str, db_path: Path) -> None:
    wrong_path = upstream_url.replace("/products", "/no-such-feed")
    result = await run_cli("sync", env=cli_env(db_path, wrong_path))
    assert result.code == 1, result
    assert "run 1 error in " in result.stdout
    assert re.search(r"^  error: .*404", result.stdout, re.MULTILINE), result.stdout
    (row,) = query(db_path, "SELECT status, error_message FROM runs")
    assert row[0] == "error" and "404" in row[1]
    failures = [e for e in result.log_entries() if e["message"].startswith(FAILURE_PREFIX)]
    assert [(e["run_id"], e["level"]) for e in failures] == [(1, "error")]
    assert failures[0]["message"] == FAILURE_PREFIX + row[1]


async def test_second_cli_sync_exits_3_while_one_runs(
    upstream_url: str, feed: FeedControl, db_path: Path
) -> None:
    feed.gate = asyncio.Event()
    first = await start_cli("sync", env=cli_env(db_path, upstream_url))
    try:
        run_id = await wait_for_running_row(db_path)
        second = await run_cli("sync", env=cli_env(db_path, upstream_url))
        assert second.code == EXIT_ALREADY_RUNNING, second
        assert f"a sync is already running: run {run_id}" in second.stderr
        assert second.stdout == ""
        assert query(db_path, "SELECT count(*) FROM runs") == [(1,)]  # the refused attempt left no row
    finally:
        feed.gate.set()
    result = await finish(first)
    assert result.code == 0 and "run 1 success" in result.stdout


async def test_cli_sync_exits_3_while_the_service_runs_one(
    upstream_url: str, feed: FeedControl, db_path: Path, tmp_path: Path
) -> None:
    feed.gate = asyncio.Event()
    service = await ServiceProcess(db_path, upstream_url, tmp_path / "svc.log").start()
    try:
        code, body = await service.request("POST", "/admin/sync/trigger")
        assert code == 200
        await wait_for_running_row(db_path)
        result = await run_cli("sync", env=cli_env(db_path, upstream_url))
        assert result.code == EXIT_ALREADY_RUNNING, result
        assert f"run {body['data']['runId']}" in result.stderr and "by admin" in result.stderr
        feed.gate.set()
        data = await service.wait_status(lambda d: d["isRunning"] is False)
        assert data["lastStatus"] == "success"
    finally:
        feed.gate.set()
        await service.stop()


async def test_the_service_answers_409_while_a_cli_sync_runs(
    upstream_url: str, feed: FeedControl, db_path: Path, tmp_path: Path
) -> None:
    feed.gate = asyncio.Event()
    cli = await start_cli("sync", env=cli_env(db_path, upstream_url))
    service = ServiceProcess(db_path, upstream_url, tmp_path / "svc.log")
    try:
        run_id = await wait_for_running_row(db_path)
        await service.start()
        code, body = await service.request("POST", "/admin/sync/trigger")
        assert code == 409 and body["data"]["runId"] == run_id
        status = await service.status()
        assert status["isRunning"] is True and status["triggeredBy"].startswith("cli:")
    finally:
        feed.gate.set()
        await service.stop()
    assert (await finish(cli)).code == 0


async def test_a_signal_cancels_the_cli_run(upstream_url: str, feed: FeedControl, db_path: Path) -> None:
    feed.gate = asyncio.Event()
    process = await start_cli("sync", env=cli_env(db_path, upstream_url))
    try:
        await wait_for_running_row(db_path)
        process.send_signal(signal.SIGINT)
        result = await finish(process, timeout_s=10)
    finally:
        feed.gate.set()
    assert result.code == 1, result
    assert "run 1 cancelled in " in result.stdout
    (row,) = query(db_path, "SELECT status, cancelled_by, created FROM runs")
    assert row[0] == "cancelled" and row[1].startswith("cli:") and row[2] == 50


async def test_plain_progress_lines_when_stdout_is_not_a_terminal(
    upstream_url: str, feed: FeedControl, db_path: Path
) -> None:
    feed.page_delay_s = 0.4
    # Four pages one at a time: about 1.6 s, so the 0.5 s poll sees the run move. With the default window
    # the last three came in together, and a poll saw the run between its two batches or not at all.
    result = await run_cli("sync", env=cli_env(db_path, upstream_url, SYNC_PAGE_WINDOW="1"))
    assert result.code == 0
    progress = re.findall(r"^run 1: (\d+)/194 processed \(created \d+", result.stdout, re.MULTILINE)
    assert progress, result.stdout
    assert [int(p) for p in progress] == sorted(int(p) for p in progress)
    assert "\r" not in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("run 1 success")


async def test_progress_bar_on_a_terminal(upstream_url: str, feed: FeedControl, db_path: Path) -> None:
    feed.page_delay_s = 0.4
    controller, terminal = pty.openpty()
    try:
        env = cli_env(db_path, upstream_url, SYNC_PAGE_WINDOW="1")  # pages one at a time, as above
        process = await start_cli("sync", env=env, stdout=terminal)
        os.close(terminal)
        result = await finish(process)
        chunks = []
        with contextlib.suppress(OSError):  # EIO once everything the child wrote has been read
            while chunk := os.read(controller, 4096):
                chunks.append(chunk)
    finally:
        os.close(controller)
    screen = b"".join(chunks).decode()
    assert result.code == 0, result
    assert re.search(r"\r\[#*-*\] +\d+% \d+/194 processed", screen), repr(screen)
    assert "run 1 success" in screen


def render_screen(output: str) -> list[str]:
    """The lines a terminal shows for ``output``: ``\r`` returns to the line's start and overwrites."""
    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)  # cursor and colour sequences: not drawn
    lines: list[str] = []
    current: list[str] = []
    column = 0
    for char in output:
        if char == "\n":
            lines.append("".join(current).rstrip())
            current, column = [], 0
        elif char == "\r":
            column = 0
        else:
            if column < len(current):
                current[column] = char
            else:
                current.append(char)
            column += 1
    lines.append("".join(current).rstrip())
    return [line for line in lines if line]


def test_the_screen_renderer_overwrites_on_carriage_return() -> None:
    assert render_screen("abc\rX\nlog\r   \rnew\n") == ["Xbc", "new"]


async def test_on_a_terminal_log_lines_stay_above_the_bar_which_shows_rate_and_eta(
    upstream_url: str, feed: FeedControl, db_path: Path
) -> None:
    feed.page_delay_s = 0.4
    feed.products[120] = {"id": 121, "price": 1}  # no title: an item error, logged while the bar is up
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    try:
        command = [sys.executable, "-m", "service", "sync"]
        process = await asyncio.create_subprocess_exec(
            *command,
            # One page at a time, so the slow pages draw the bar in several states.
            env=cli_env(db_path, upstream_url, SYNC_LOG_FORMAT="text", SYNC_PAGE_WINDOW="1"),
            cwd=REPO_ROOT,
            stdout=terminal,
            stderr=terminal,  # a terminal shows both streams on one screen
            stdin=DEVNULL,
        )
        os.close(terminal)
        chunks = []
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await loop.run_in_executor(None, os.read, controller, 4096)
            except OSError:  # EIO once the child is gone and everything it wrote has been read
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        os.close(controller)
    raw = b"".join(chunks).decode()
    screen = render_screen(raw.replace("\r\n", "\n"))
    assert code == 0, screen
    log_lines = [line for line in screen if re.search(r" (INFO|WARNING|ERROR) service\.", line)]
    assert any("item at position 120 skipped" in line for line in log_lines), screen
    for line in log_lines:
        assert "processed," not in line, screen  # no bar drawn into a log line
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line), screen  # each log line from its start
    # Each state of the bar, as drawn: items per second, and the time left once the total is known.
    drawn = [part for part in re.split(r"[\r\n]", raw) if "processed," in part]
    assert any(re.search(r"\d+/194 processed, [\d.]+ items/s, ETA \d\d:\d\d", part) for part in drawn), drawn
    assert screen[-1].startswith("run 1 success"), screen


async def test_runs_lists_recent_runs(db_path: Path) -> None:
    await (await SqliteDatabase.open(db_path, DEFAULT_MIGRATIONS_DIR)).close()
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        insert_finished_run(conn, 3, created=194)
        insert_finished_run(conn, 2, status="error")
        insert_finished_run(conn, 1, errors=2)

    table = await run_cli("runs", env=cli_env(db_path))
    assert table.code == 0, table
    header, *rows = table.stdout.strip().splitlines()
    assert header.split() == [
        "ID", "STATUS", "STARTED", "DURATION", "BY", "CREATED", "UPDATED", "UNCHANGED", "ERRORS", "MESSAGE",
    ]  # fmt: skip
    assert [row.split()[:2] for row in rows] == [["3", "success"], ["2", "error"], ["1", "success"]]
    assert rows[1].rstrip().endswith("upstream down") and rows[2].split()[5] == "194"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", rows[0].split()[2])

    errors_only = await run_cli("runs", "--status", "error", env=cli_env(db_path))
    assert [row.split()[0] for row in errors_only.stdout.strip().splitlines()[1:]] == ["2"]
    as_json = json.loads((await run_cli("runs", "--json", "--limit", "2", env=cli_env(db_path))).stdout)
    assert [run["id"] for run in as_json["runs"]] == [3, 2]
    assert as_json["runs"][1]["error"] == "upstream down"


def test_runs_rejects_a_bad_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["runs", "--limit", "0"])
    assert exited.value.code == 2
    assert "--limit" in capsys.readouterr().err


async def test_runs_without_a_database(tmp_path: Path) -> None:
    result = await run_cli("runs", env=cli_env(tmp_path / "absent.db"))
    assert result.code == 1 and "no database" in result.stderr
    assert not (tmp_path / "absent.db").exists()


async def test_migrate_applies_and_lists_migrations(db_path: Path) -> None:
    migrations = load_migrations(DEFAULT_MIGRATIONS_DIR)
    result = await run_cli("migrate", env=cli_env(db_path))
    assert result.code == 0, result
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{db_path}: schema at version {len(migrations)}"
    assert [line.split()[0] for line in lines[1:]] == [f"{m.version:04d}_{m.name}" for m in migrations]
    assert query(db_path, "SELECT count(*) FROM schema_migrations") == [(len(migrations),)]
    again = await run_cli("migrate", env=cli_env(db_path))
    assert again.code == 0 and again.stdout == result.stdout


async def test_help_as_a_process(tmp_path: Path) -> None:
    result = await run_cli("--help", env=cli_env(tmp_path / "unused.db", SYNC_PORT="not-even-parsed"))
    assert result.code == 0, result
    assert result.stdout.startswith("usage: product-sync")
    for command in ("serve", "sync", "runs", "migrate"):
        assert command in result.stdout
    assert not (tmp_path / "unused.db").exists()


@pytest.mark.parametrize("command", [migrate, lambda settings: sync(settings, quiet=True)])
def test_an_unusable_database_path_is_one_line_and_exit_1(
    command: Callable[[Settings], int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert command(Settings(db_path=blocker / "sync.db")) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "a-file" in err


@pytest.mark.parametrize("command", ["serve", "sync", "runs", "migrate"])
def test_help_for_every_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: product-sync {command}")
    if command == "sync":
        assert "exit codes" in out and "3  a run is already in progress" in out
    if command == "runs":
        assert "--limit" in out and "--status" in out and "--json" in out


async def test_invalid_settings_exit_2(tmp_path: Path) -> None:
    result = await run_cli("sync", env=cli_env(tmp_path / "x.db", SYNC_PORT="ninety"))
    assert result.code == 2 and "invalid settings" in result.stderr
