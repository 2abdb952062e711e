"""Single-row ledger reads: on the event loop, shared within one loop turn, never failing on a busy file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.api.schemas import StatusResponse
from service.api.status_body import StatusBodyCache, status_body
from service.database.sqlite import SqliteDatabase
from service.domain.outcomes import BatchCounts
from service.ledger.records import RUN_COLUMNS, RunRecord
from service.ledger.runs import Ledger
from tests.conftest import BOTH_BACKENDS

INSERT_FOREIGN_RUN = """
INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)
VALUES ('running', '2026-01-07T13:33:12.000Z', '2026-01-07T13:33:12.000Z', 'raw', 'raw-client')
"""


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_records_are_built_by_column_name_whatever_the_order_of_the_select(
    ledger: Ledger, database: SqliteDatabase
) -> None:
    run = await ledger.start_run("admin", "http://127.0.0.1/feed")
    reversed_columns = ", ".join(reversed(RUN_COLUMNS.split(", ")))
    row = await database.fetch_one(f"SELECT {reversed_columns} FROM runs WHERE id = ?", (run.id,))
    assert row is not None and RunRecord.from_row(row) == run
    # A select that lacks a field, or has one the record does not know, is an error, not a shifted record.
    short = await database.fetch_one("SELECT id, status FROM runs WHERE id = ?", (run.id,))
    assert short is not None
    with pytest.raises(TypeError):
        RunRecord.from_row(short)
    extra = await database.fetch_one(f"SELECT {RUN_COLUMNS}, 1 AS surplus FROM runs WHERE id = ?", (run.id,))
    assert extra is not None
    with pytest.raises(TypeError):
        RunRecord.from_row(extra)


async def test_reads_in_one_loop_turn_share_a_snapshot_and_the_next_turn_sees_new_writes(
    ledger: Ledger, database: SqliteDatabase
) -> None:
    first = await ledger.start_run("admin", None)
    await ledger.finish_run(first.id, "success")
    raw = _raw(database.path)
    try:
        seen = await ledger.latest_run()  # no suspension in between: all of this is one loop turn
        raw.execute(INSERT_FOREIGN_RUN)
        same_turn = await ledger.latest_run()
        await asyncio.sleep(0)
        next_turn = await ledger.latest_run()
    finally:
        raw.close()
    assert seen is not None and same_turn == seen and seen.id == first.id
    assert next_turn is not None and next_turn.id == first.id + 1 and next_turn.owner == "raw-client"


async def test_our_own_commit_is_seen_by_the_next_read(ledger: Ledger, database: SqliteDatabase) -> None:
    run = await ledger.start_run("admin", None)
    before = await ledger.latest_run()
    await ledger.record_progress(run.id, BatchCounts(created=3, processed=3), [])
    after = await ledger.latest_run()
    assert before is not None and before.created == 0
    assert after is not None and after.created == 3 and after.processed == 3


class _BusyOnce:
    """Stands in for the inline connection: the first query answers SQLITE_BUSY, as during WAL recovery."""

    def __init__(self, inner: sqlite3.Connection) -> None:
        self.inner = inner
        self.busy_answers = 0

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if self.busy_answers == 0:
            self.busy_answers += 1
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = 261  # SQLITE_BUSY_RECOVERY: an extended code of SQLITE_BUSY
            raise error
        return self.inner.execute(sql, params)

    def close(self) -> None:
        self.inner.close()


async def test_a_busy_answer_falls_back_to_the_threaded_reader(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, database: SqliteDatabase
) -> None:
    run = await ledger.start_run("admin", None)
    busy = _BusyOnce(database._inline_reader)
    monkeypatch.setattr(database, "_inline_reader", busy)
    latest = await ledger.latest_run()
    assert busy.busy_answers == 1
    assert latest is not None and latest.id == run.id and latest.is_running


async def test_other_sqlite_errors_are_not_swallowed(ledger: Ledger, database: SqliteDatabase) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await database.fetch_one("SELECT * FROM no_such_table")


@BOTH_BACKENDS
async def test_the_status_body_is_the_documented_model_for_every_run_state(ledger: Ledger) -> None:
    bodies = [status_body(None)]
    running = await ledger.start_run("admin", None)
    bodies.append(status_body(await ledger.latest_run()))
    await ledger.finish_run(running.id, "success")
    bodies.append(status_body(await ledger.latest_run()))
    failed = await ledger.start_run("admin", None)
    await ledger.finish_run(failed.id, "error", error_message="Upstream answered 503 after 4 attempts")
    bodies.append(status_body(await ledger.latest_run()))
    cancelled = await ledger.start_run("admin", None)
    await ledger.request_cancel("ci")
    await ledger.finish_run(cancelled.id, "cancelled", cancelled_by="ci")
    bodies.append(status_body(await ledger.latest_run()))

    for body in bodies:
        # The model (the OpenAPI schema) accepts the body and writes it back identically.
        model = StatusResponse.model_validate_json(body)
        assert orjson.loads(model.model_dump_json()) == orjson.loads(body)
    statuses = [orjson.loads(body)["data"]["lastStatus"] for body in bodies]
    assert statuses == ["idle", "running", "success", "error", "cancelled"]


async def test_the_status_body_cache_answers_the_same_body_while_the_latest_run_reads_the_same(
    ledger: Ledger, database: SqliteDatabase
) -> None:
    cache = StatusBodyCache()
    assert cache.body(None) == status_body(None)
    run = await ledger.start_run("admin", None)
    first = await ledger.get_run(run.id)
    body = cache.body(first)
    again = await ledger.get_run(run.id)  # a new read, and a new record with the same values
    assert again is not None and again is not first and again == first
    assert cache.body(again) is body
    # A change by another connection (another process's run, an auditor's fix) is a new body.
    raw = _raw(database.path)
    try:
        raw.execute("UPDATE runs SET processed = 7 WHERE id = ?", (run.id,))
    finally:
        raw.close()
    await asyncio.sleep(0)  # the next turn: rows read in this one are shared within it
    changed = await ledger.get_run(run.id)
    assert changed is not None and changed.processed == 7
    assert cache.body(changed) is not body
    assert orjson.loads(cache.body(changed))["data"]["progress"] == {"processed": 7, "total": None}


async def test_an_unchanged_latest_run_is_the_same_record_and_any_change_makes_a_new_one(
    ledger: Ledger, database: SqliteDatabase
) -> None:
    run = await ledger.start_run("admin", None)
    first = await ledger.latest_run()
    await asyncio.sleep(0)  # a new loop turn: a new read, and a new row object with the same values
    again = await ledger.latest_run()
    assert first is not None and again is first
    # A change by another connection (another process's run, an auditor's fix) is a new record.
    raw = _raw(database.path)
    try:
        raw.execute("UPDATE runs SET processed = 7 WHERE id = ?", (run.id,))
    finally:
        raw.close()
    await asyncio.sleep(0)
    changed = await ledger.latest_run()
    assert changed is not None and changed is not first and changed.processed == 7


@BOTH_BACKENDS
async def test_status_bodies_are_rebuilt_exactly_when_the_latest_run_changes(ledger: Ledger) -> None:
    cache = StatusBodyCache()
    assert cache.body(None) == status_body(None)
    run = await ledger.start_run("admin", None)
    running = await ledger.latest_run()
    body = cache.body(running)
    assert cache.body(running) is body  # the same record: the body built for it
    await ledger.record_progress(run.id, BatchCounts(created=2, processed=2), [])
    await asyncio.sleep(0)
    progressed = await ledger.latest_run()
    assert orjson.loads(cache.body(progressed))["data"]["progress"] == {"processed": 2, "total": None}
    await ledger.finish_run(run.id, "success")
    await asyncio.sleep(0)
    assert cache.body(await ledger.latest_run()) == status_body(await ledger.latest_run())
    assert orjson.loads(cache.body(await ledger.latest_run()))["data"]["lastStatus"] == "success"


async def test_the_end_of_run_checkpoint_writes_the_run_into_the_database_file(
    ledger: Ledger, database: SqliteDatabase
) -> None:
    run = await ledger.start_run("admin", None)
    for _ in range(20):
        await ledger.record_progress(run.id, BatchCounts(processed=1), [])
    await ledger.finish_run(run.id, "success")
    # Only a checkpoint writes the database file itself (commits go to the WAL, far below SQLite's
    # 10,000-page auto-checkpoint here), so the file's bytes tell whether ours ran.
    before = database.path.read_bytes()
    await ledger.checkpoint()
    after = database.path.read_bytes()
    assert after != before
    raw = _raw(database.path)
    try:
        busy, log_frames, checkpointed = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        raw.close()
    assert busy == 0 and log_frames == checkpointed
