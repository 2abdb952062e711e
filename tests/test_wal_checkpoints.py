"""The write-ahead log is copied back into the database file in the background after large commits, and
stays bounded while a writer commits without pause (service/database/wal_checkpoints.py).

Only a checkpoint writes the database file itself: commits go to the log, and SQLite's own
auto-checkpoint (10,000 pages here) is far above what these commits write, but for the bound's test. So
the file's size and what a reader of the file alone (``immutable``, which ignores the log) finds tell
whether a checkpoint ran.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from service.database.sqlite import WRITER_AUTOCHECKPOINT_PAGES, SqliteDatabase, file_uri
from service.database.wal_checkpoints import PASS_AFTER_ROWS
from service.settings import DEFAULT_MIGRATIONS_DIR
from tests.conftest import wait_until

_ROW_BYTES = 1024
_PAGE_BYTES = 4096


async def _with_filler(path: Path) -> SqliteDatabase:
    database = await SqliteDatabase.open(path, DEFAULT_MIGRATIONS_DIR)
    async with database.transaction() as tx:
        await tx.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    await database.checkpoint()  # the schema in the file: what follows is all the filler's
    return database


async def _fill(database: SqliteDatabase, rows: int) -> None:
    async with database.transaction() as tx:
        await tx.execute_many(
            "INSERT INTO filler (body) VALUES (randomblob(?))", [(_ROW_BYTES,) for _ in range(rows)]
        )


def _rows_in_file(path: Path) -> int:
    """The filler rows the database file itself holds, the log left aside."""
    conn = sqlite3.connect(file_uri(path, "mode=ro&immutable=1"), uri=True)
    try:
        [(count,)] = conn.execute("SELECT count(*) FROM filler").fetchall()
    finally:
        conn.close()
    return int(count)


async def test_a_large_commit_reaches_the_database_file_without_the_writer_checkpointing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sync.db"
    database = await _with_filler(path)
    try:
        await _fill(database, 2 * PASS_AFTER_ROWS)  # about 600 pages: the writer does not checkpoint
        await wait_until(lambda: _rows_in_file(path) == 2 * PASS_AFTER_ROWS, 10, "the rows in the file")
    finally:
        await database.close()


async def test_small_commits_are_left_to_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    database = await _with_filler(path)
    try:
        for _ in range(20):  # like heartbeats and triggers: a row or two each
            await _fill(database, 2)
        await asyncio.sleep(0.5)
        assert _rows_in_file(path) == 0  # no pass, and its fsyncs, for them
        await _fill(database, PASS_AFTER_ROWS)  # the rows written since the last pass add up
        await wait_until(lambda: _rows_in_file(path) == PASS_AFTER_ROWS + 40, 10, "the rows in the file")
    finally:
        await database.close()


async def test_the_log_stays_bounded_while_the_writer_commits_without_pause(tmp_path: Path) -> None:
    # A background pass racing the writer never leaves the log empty, and only an empty log starts over:
    # the writer's own checkpoints, in the passes' pauses, must still bound it.
    path = tmp_path / "sync.db"
    wal = Path(f"{path}-wal")
    database = await _with_filler(path)
    rows_per_commit = 2 * PASS_AFTER_ROWS  # about 600 pages, so a pass is due after every commit
    commits = 3 * WRITER_AUTOCHECKPOINT_PAGES * _PAGE_BYTES // (rows_per_commit * _ROW_BYTES)
    largest = 0
    try:
        for _ in range(commits):
            await _fill(database, rows_per_commit)
            largest = max(largest, os.stat(wal).st_size)
    finally:
        await database.close()
    # The writer checkpoints once the log passes 10,000 pages, or at a later commit when a pass held the
    # checkpoint then: as many commits later as the writer makes during one pass, more when the disk is
    # busy (the quick suite's other tests fsync too; 12 were seen). Without the writer's checkpoints the
    # log would hold all 60 commits' pages, and with the passes' thread starved it reached 38 to 47.
    one_commit = rows_per_commit * _ROW_BYTES * 3 // 2  # pages with their frame headers, and the index
    bound = WRITER_AUTOCHECKPOINT_PAGES * (_PAGE_BYTES + 24) + 16 * one_commit
    assert largest < bound, f"the log reached {largest:,} bytes ({bound:,} allowed)"


async def test_close_leaves_no_checkpoint_task(tmp_path: Path) -> None:
    database = await _with_filler(tmp_path / "sync.db")
    await _fill(database, PASS_AFTER_ROWS)  # a pass due, or under way, when the database closes
    await database.close()
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "sqlite-wal-checkpoints"]
