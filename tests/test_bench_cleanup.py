"""The benchmark deletes the databases each run leaves behind (gigabytes per run), never the logs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.run import remove_databases


def test_a_run_directory_keeps_its_logs_and_loses_its_databases(tmp_path: Path) -> None:
    for name in ("sync.db", "load.db", "memory-100000.db"):
        conn = sqlite3.connect(tmp_path / name)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")  # leaves -wal and -shm files while open
        assert (tmp_path / f"{name}-wal").exists()
        conn.close()
    (tmp_path / "sync.db.owners").write_text("")
    (tmp_path / "load.db-wal").write_bytes(b"left by a killed service")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "service-load.log").write_text("kept")
    (tmp_path / "notes.txt").write_text("kept")

    removed = remove_databases(tmp_path)

    assert {path.name for path in removed} >= {"sync.db", "load.db", "load.db-wal", "sync.db.owners"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["logs", "notes.txt"]
    assert (logs / "service-load.log").read_text() == "kept"
