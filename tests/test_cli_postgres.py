"""The command line with SYNC_DATABASE_URL: start-up errors said plainly and without the password, and
``migrate``, ``sync`` and ``runs`` against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service_process import free_port
from tests.test_cli import cli_env, run_cli

PASSWORD = "hunter2-not-for-logs"


async def test_a_server_out_of_reach_stops_serve_with_the_reason_and_no_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://sync:{PASSWORD}@127.0.0.1:{port}/shop"
    env = cli_env(tmp_path / "unused.db", SYNC_DATABASE_URL=url, SYNC_PORT=str(free_port()))
    result = await run_cli("serve", env=env)
    assert result.code == 1, result
    assert f"cannot start: cannot reach PostgreSQL at postgresql://***@127.0.0.1:{port}/shop" in result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


async def test_a_url_that_is_not_postgresql_is_a_usage_error_that_hides_the_value(tmp_path: Path) -> None:
    url = f"mysql://sync:{PASSWORD}@127.0.0.1/shop"
    result = await run_cli("serve", env=cli_env(tmp_path / "unused.db", SYNC_DATABASE_URL=url))
    assert result.code == 2, result
    assert "SYNC_DATABASE_URL must be a postgresql:// URL" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.postgres
async def test_migrate_sync_and_runs_on_postgresql(
    tmp_path: Path, postgres_url: str, upstream_url: str
) -> None:
    env = cli_env(tmp_path / "unused.db", upstream_url, SYNC_DATABASE_URL=postgres_url)
    migrated = await run_cli("migrate", env=env)
    assert migrated.code == 0, migrated
    assert migrated.stdout.startswith("postgresql://***@127.0.0.1:")  # the target, never a password
    assert "0004_owners_and_audits" in migrated.stdout

    synced = await run_cli("sync", "--quiet", env=env)
    assert synced.code == 0, synced
    assert "created 194" in synced.stdout

    table = await run_cli("runs", env=env)
    assert table.code == 0, table
    assert "success" in table.stdout.splitlines()[1] and "cli:" in table.stdout
    assert not (tmp_path / "unused.db").exists()  # nothing went to a SQLite file
