"""The rules that matter are SQLite's, so they hold for any process and any client, even sqlite3 itself."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from service.database.sqlite import SqliteDatabase
from service.domain.outcomes import BatchCounts
from service.ledger.owner import OwnerLock
from service.ledger.records import INTERRUPTED_MESSAGE, RunAlreadyRunning, RunNoLongerRunning
from service.ledger.runs import Ledger
from service.settings import DEFAULT_MIGRATIONS_DIR
from tests.conftest import BOTH_BACKENDS


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_only_one_running_row_even_for_a_raw_client(ledger: Ledger, database: SqliteDatabase) -> None:
    await ledger.start_run("admin", None)
    with _raw(database.path) as conn, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute(
            "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)"
            " VALUES ('running', 'x', 'x', 'sqlite3', 'other')"
        )


@BOTH_BACKENDS
async def test_second_start_names_the_running_run(ledger: Ledger) -> None:
    first = await ledger.start_run("admin", None)
    with pytest.raises(RunAlreadyRunning) as caught:
        await ledger.start_run("ci", None)
    assert caught.value.running.id == first.id
    assert caught.value.running.started_at == first.started_at


async def test_finished_rows_are_final(ledger: Ledger, database: SqliteDatabase) -> None:
    run = await ledger.start_run("admin", None)
    assert await ledger.finish_run(run.id, "success")
    # A duplicate or late finisher changes nothing...
    assert not await ledger.finish_run(run.id, "error", error_message="late")
    with pytest.raises(RunNoLongerRunning):
        await ledger.record_progress(run.id, BatchCounts(created=5), [])
    final = await ledger.get_run(run.id)
    assert final is not None and final.status == "success" and final.created == 0
    # ...and not even a raw client can rewrite history.
    with _raw(database.path) as conn, pytest.raises(sqlite3.IntegrityError, match="final"):
        conn.execute("UPDATE runs SET status = 'error', error_message = 'x' WHERE id = ?", (run.id,))


async def test_runs_start_as_running_and_states_are_consistent(
    ledger: Ledger, database: SqliteDatabase
) -> None:
    with _raw(database.path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="start as running"):
            conn.execute(
                "INSERT INTO runs (status, started_at, finished_at, heartbeat_at, triggered_by, owner)"
                " VALUES ('success', 'x', 'y', 'x', 'a', 'o')"
            )
        run = await ledger.start_run("admin", None)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # an error needs its message
            conn.execute("UPDATE runs SET status = 'error', finished_at = 'y' WHERE id = ?", (run.id,))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # unknown status
            conn.execute("UPDATE runs SET status = 'paused' WHERE id = ?", (run.id,))


@BOTH_BACKENDS
async def test_counters_and_item_errors_move_together(ledger: Ledger) -> None:
    from service.domain.outcomes import ItemError

    run = await ledger.start_run("admin", None)
    await ledger.record_progress(
        run.id,
        BatchCounts(created=3, errors=1, processed=4, total=10),
        [ItemError(position=2, external_id="42", reason="price: must be >= 0")],
    )
    current = await ledger.get_run(run.id)
    assert current is not None
    assert (current.created, current.errors, current.processed, current.total) == (3, 1, 4, 10)
    errors = await ledger.list_run_errors(run.id, 10, None)
    assert [(e.position, e.external_id, e.reason) for e in errors] == [(2, "42", "price: must be >= 0")]


async def test_a_run_of_a_dead_owner_is_recovered_at_the_next_start(
    ledger: Ledger, database: SqliteDatabase
) -> None:
    with _raw(database.path) as conn:
        conn.execute(
            "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)"
            " VALUES ('running', '2026-01-07T13:30:00.000Z', '2099-01-01T00:00:00.000Z',"
            " 'admin', 'gone.1.dead')"
        )
    run = await ledger.start_run("admin", None)
    old = await ledger.get_run(run.id - 1)
    assert old is not None and old.status == "error" and old.error_message == INTERRUPTED_MESSAGE
    assert old.finished_at is not None and old.duration_s is not None


async def test_a_status_read_recovers_a_dead_run_without_waiting_for_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    database = await SqliteDatabase.open(path, DEFAULT_MIGRATIONS_DIR, busy_timeout_s=60)
    owner = OwnerLock(OwnerLock.lock_dir_for(path))
    owner.acquire()
    try:
        ledger = Ledger(database, owner, stall_timeout_s=60)
        other_process = _raw(path)
        other_process.execute(
            "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)"
            " VALUES ('running', '2026-01-07T13:30:00.000Z', '2099-01-01T00:00:00.000Z',"
            " 'admin', 'gone.1.dead')"
        )
        other_process.execute("BEGIN IMMEDIATE")  # in the middle of a write, for a while
        # Answered as the row stands, not after the write (or the busy timeout, a minute here).
        found = await asyncio.wait_for(ledger.current_status(), 10)
        assert found is not None and found.status == "running"
        other_process.execute("ROLLBACK")
        other_process.close()
        recovered = await ledger.current_status()  # the lock is free: the next status read recovers it
        assert recovered is not None and recovered.status == "error"
        assert recovered.error_message == INTERRUPTED_MESSAGE
    finally:
        owner.release()
        await database.close()


async def test_a_live_owner_with_a_stale_heartbeat_is_failed_as_stalled(
    ledger: Ledger, tmp_path: Path, database: SqliteDatabase
) -> None:
    other = OwnerLock(OwnerLock.lock_dir_for(database.path))
    other.acquire()  # alive: its lock is held
    try:
        with _raw(database.path) as conn:
            conn.execute(
                "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)"
                " VALUES ('running', '2026-01-07T13:30:00.000Z', '2026-01-07T13:30:00.000Z', 'admin', ?)",
                (other.owner_id,),
            )
        recovered = await ledger.recover_dead_runs()
        assert recovered is not None
        row = await ledger.get_run(recovered.id)
        assert row is not None and row.status == "error"
        assert row.error_message is not None and row.error_message.startswith("Sync stalled")
    finally:
        other.release()


async def test_a_live_progressing_owner_is_left_alone(ledger: Ledger, database: SqliteDatabase) -> None:
    other = OwnerLock(OwnerLock.lock_dir_for(database.path))
    other.acquire()
    try:
        with _raw(database.path) as conn:
            conn.execute(
                "INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)"
                " VALUES ('running', '2099-01-01T00:00:00.000Z', '2099-01-01T00:00:00.000Z', 'admin', ?)",
                (other.owner_id,),
            )
        assert await ledger.recover_dead_runs() is None
        with pytest.raises(RunAlreadyRunning):
            await ledger.start_run("admin", None)
    finally:
        other.release()
