"""Audits that write nothing: ``product-sync runs`` and the README's ``sqlite3`` commands, run as a real
non-root user who may read the database's directory but not write it, while the service holds the
database open and after it stopped; and ``runs`` never migrates, switches or creates a database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.database.migrations import load_migrations
from service.database.sqlite import SqliteDatabase
from service.settings import DEFAULT_MIGRATIONS_DIR
from tests.ledger_rows import query
from tests.service_process import REPO_ROOT, ServiceProcess
from tests.test_cli import Result, cli_env, finish, run_cli

AUDITOR = "psync-auditor"

# `product-sync runs` as the auditor. The interpreter may live where only root can read (a pyenv under
# /root), so the command is imported first and the process then gives up root for good, before it
# touches the database: every file access of the command itself is the auditor's.
_RUNS_AS_USER = """
import os, sys
from service.cli.main import main
os.setgroups([])
os.setgid(int(sys.argv[1]))
os.setuid(int(sys.argv[2]))
assert os.getuid() != 0 and os.geteuid() != 0 and os.getegid() != 0
raise SystemExit(main(sys.argv[3:]))
"""


@dataclass(frozen=True)
class Auditor:
    uid: int
    gid: int


@pytest.fixture(scope="session")
def auditor() -> Auditor:
    """A real unprivileged account; created when missing. Failing to get one fails the test, never skips."""
    if os.geteuid() != 0:
        pytest.fail("these tests switch to another user, so they run as root (as in CI)")
    try:
        entry = pwd.getpwnam(AUDITOR)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", AUDITOR],
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            pytest.fail(f"cannot create the user {AUDITOR}: {created.stderr.strip()}")
        entry = pwd.getpwnam(AUDITOR)
    assert entry.pw_uid != 0
    for tool in ("runuser", "sqlite3"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed (scripts/bootstrap installs the sqlite3 CLI when missing)")
    for directory in (REPO_ROOT, *REPO_ROOT.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            pytest.fail(f"{directory} must be searchable by other users: the auditor runs the code in it")
    return Auditor(entry.pw_uid, entry.pw_gid)


@pytest.fixture
def audit_dir() -> Iterator[Path]:
    """Root's directory, readable by everyone, writable by root only (tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="product-sync-audit-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def as_auditor(*command: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(
        ["runuser", "-u", AUDITOR, "--", *command], capture_output=True, text=True, env=env, cwd="/"
    )


def audit_with_sqlite3(uri: str) -> str:
    result = as_auditor("sqlite3", uri, "SELECT id, status, created FROM runs ORDER BY id")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def runs_as_auditor(who: Auditor, db_path: Path) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _RUNS_AS_USER,
        str(who.gid),
        str(who.uid),
        "runs",
        "--json",
        env=cli_env(db_path),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    result = await finish(process)
    assert result.code == 0, result
    runs: list[dict[str, Any]] = json.loads(result.stdout)["runs"]
    return runs


def side_files(db_path: Path) -> list[str]:
    """Which of the database's -wal and -shm files exist."""
    return [suffix for suffix in ("-wal", "-shm") if Path(f"{db_path}{suffix}").exists()]


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file of the directory with its content hash and mtime."""
    return {
        path.name: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(directory.iterdir())
        if path.is_file()
    }


async def test_an_auditor_without_write_access_reads_the_ledger_while_the_service_runs_and_after(
    auditor: Auditor, audit_dir: Path, tmp_path: Path, upstream_url: str
) -> None:
    db_path = audit_dir / "product-sync.db"
    service = await ServiceProcess(db_path, upstream_url, tmp_path / "service.log").start()
    try:
        code, body = await service.request("POST", "/admin/sync/trigger")
        assert code == 200, body
        await service.wait_status(lambda d: d["lastStatus"] == "success")
        assert as_auditor("touch", str(audit_dir / "probe")).returncode != 0  # the directory is not theirs
        assert side_files(db_path) == ["-wal", "-shm"]

        # The service has it open: through its -wal and -shm, which the auditor may only read.
        assert audit_with_sqlite3(f"file:{db_path}?mode=ro") == "1|success|194"
        runs = await runs_as_auditor(auditor, db_path)
        assert [(r["id"], r["status"], r["stats"]["created"]) for r in runs] == [(1, "success", 194)]

        service.send_signal(signal.SIGTERM)
        assert await service.wait_exit() == 0, service.log_text()
    finally:
        await service.stop()

    # Stopped: the WAL was folded into the file and removed; mode=ro would now have to create it.
    assert side_files(db_path) == []
    before = snapshot(audit_dir)
    assert audit_with_sqlite3(f"file:{db_path}?mode=ro&immutable=1") == "1|success|194"
    runs = await runs_as_auditor(auditor, db_path)
    assert [(r["id"], r["status"], r["stats"]["created"]) for r in runs] == [(1, "success", 194)]
    assert snapshot(audit_dir) == before


async def test_runs_on_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    db_path = tmp_path / "absent" / "sync.db"
    result = await run_cli("runs", env=cli_env(db_path))
    assert (result.code, result.stderr.strip()) == (1, f"cannot read runs: no database at {db_path}")
    assert names(tmp_path) == []


async def older_database(db_path: Path, tmp_path: Path, versions: int) -> None:
    older = tmp_path / "older-migrations"
    older.mkdir()
    for migration in sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql"))[:versions]:
        shutil.copy(migration, older)
    await (await SqliteDatabase.open(db_path, older)).close()


def assert_refused(result: Result, db_path: Path, version: int) -> None:
    expected = len(load_migrations(DEFAULT_MIGRATIONS_DIR))
    assert result.code == 1, result
    assert result.stderr.strip() == (
        f"cannot read runs: the schema of {db_path} is at version {version}, this code expects "
        f"{expected}: run `product-sync migrate` (or start the service) first"
    )


async def test_runs_never_migrates_an_older_database(tmp_path: Path) -> None:
    db_path = tmp_path / "db" / "sync.db"
    db_path.parent.mkdir()
    await older_database(db_path, tmp_path, versions=3)
    before = snapshot(db_path.parent)
    applied = query(db_path, "SELECT * FROM schema_migrations ORDER BY version")

    assert_refused(await run_cli("runs", env=cli_env(db_path)), db_path, 3)
    assert snapshot(db_path.parent) == before
    assert query(db_path, "SELECT * FROM schema_migrations ORDER BY version") == applied


async def test_runs_never_turns_an_empty_file_into_a_database(tmp_path: Path) -> None:
    db_path = tmp_path / "sync.db"
    db_path.touch()
    assert_refused(await run_cli("runs", env=cli_env(db_path)), db_path, 0)
    assert names(tmp_path) == ["sync.db"]
    assert snapshot(tmp_path)["sync.db"][0] == hashlib.sha256(b"").hexdigest()


async def test_runs_on_a_current_database_changes_no_byte(tmp_path: Path, upstream_url: str) -> None:
    db_path = tmp_path / "db" / "sync.db"
    synced = await run_cli("sync", "--quiet", env=cli_env(db_path, upstream_url))
    assert synced.code == 0, synced
    before = snapshot(db_path.parent)
    result = await run_cli("runs", env=cli_env(db_path))
    assert result.code == 0, result
    assert result.stdout.splitlines()[1].split()[:2] == ["1", "success"]
    assert snapshot(db_path.parent) == before  # no -wal or -shm left behind either
