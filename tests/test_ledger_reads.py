"""Single-row ledger reads: on the event loop, shared within one loop turn, never failing on a busy file."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from typing import Any

import orjson
import pytest

from service.api.schemas import StatusBodies, StatusResponse, status_body
from service.ledger import queries
from service.ledger.runs import BatchCounts, Ledger, RunRecord

INSERT_FOREIGN_RUN = """
INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner)
VALUES ('running', '2026-01-07T13:33:12.000Z', '2026-01-07T13:33:12.000Z', 'raw', 'raw-client')
"""


def _raw(ledger: Ledger) -> sqlite3.Connection:
    return sqlite3.connect(ledger.db.path, isolation_level=None)


def test_run_columns_list_the_record_fields_in_order() -> None:
    # RunRecord.from_row builds records by position, so the order is the contract between the two.
    selected = [name.strip() for name in queries.RUN_COLUMNS.split(",")]
    assert selected == [field.name for field in dataclasses.fields(RunRecord)]


async def test_reads_in_one_loop_turn_share_a_snapshot_and_the_next_turn_sees_new_writes(
    ledger: Ledger,
) -> None:
    first = await ledger.start_run("admin", None)
    await ledger.finish_run(first.id, "success")
    raw = _raw(ledger)
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


async def test_our_own_commit_is_seen_by_the_next_read(ledger: Ledger) -> None:
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
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await ledger.start_run("admin", None)
    busy = _BusyOnce(ledger.db._inline_reader)
    monkeypatch.setattr(ledger.db, "_inline_reader", busy)
    latest = await ledger.latest_run()
    assert busy.busy_answers == 1
    assert latest is not None and latest.id == run.id and latest.is_running


async def test_other_sqlite_errors_are_not_swallowed(ledger: Ledger) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await ledger.db.fetch_one("SELECT * FROM no_such_table")


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


async def test_an_unchanged_latest_run_is_the_same_record_and_any_change_makes_a_new_one(
    ledger: Ledger,
) -> None:
    run = await ledger.start_run("admin", None)
    first = await ledger.latest_run()
    await asyncio.sleep(0)  # a new loop turn: a new read, and a new row object with the same values
    again = await ledger.latest_run()
    assert first is not None and again is first
    # A change by another connection (another process's run, an auditor's fix) is a new record.
    raw = _raw(ledger)
    try:
        raw.execute("UPDATE runs SET processed = 7 WHERE id = ?", (run.id,))
    finally:
        raw.close()
    await asyncio.sleep(0)
    changed = await ledger.latest_run()
    assert changed is not None and changed is not first and changed.processed == 7


async def test_status_bodies_are_rebuilt_exactly_when_the_latest_run_changes(ledger: Ledger) -> None:
    bodies = StatusBodies()
    assert bodies.body(None) == status_body(None)
    run = await ledger.start_run("admin", None)
    running = await ledger.latest_run()
    body = bodies.body(running)
    assert bodies.body(running) is body  # the same record: the body built for it
    await ledger.record_progress(run.id, BatchCounts(created=2, processed=2), [])
    await asyncio.sleep(0)
    progressed = await ledger.latest_run()
    assert orjson.loads(bodies.body(progressed))["data"]["progress"] == {"processed": 2, "total": None}
    await ledger.finish_run(run.id, "success")
    await asyncio.sleep(0)
    assert bodies.body(await ledger.latest_run()) == status_body(await ledger.latest_run())
    assert orjson.loads(bodies.body(await ledger.latest_run()))["data"]["lastStatus"] == "success"


async def test_the_end_of_run_checkpoint_writes_the_run_into_the_database_file(ledger: Ledger) -> None:
    run = await ledger.start_run("admin", None)
    for _ in range(20):
        await ledger.record_progress(run.id, BatchCounts(processed=1), [])
    await ledger.finish_run(run.id, "success")
    # Only a checkpoint writes the database file itself (commits go to the WAL, far below SQLite's
    # 10,000-page auto-checkpoint here), so the file's bytes tell whether ours ran.
    before = ledger.db.path.read_bytes()
    await ledger.db.checkpoint()
    after = ledger.db.path.read_bytes()
    assert after != before
    raw = _raw(ledger)
    try:
        busy, log_frames, checkpointed = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        raw.close()
    assert busy == 0 and log_frames == checkpointed
