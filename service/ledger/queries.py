"""Every SQL statement of the ledger, in one place. All parameterised.

Most run unchanged on both backends; a statement whose SQL differs is a dict by dialect.
"""

from service.database.access import Dialect
from service.ledger.records import RUN_COLUMNS

LATEST_RUN = f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT 1"

RUN_BY_ID = f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"

RUNNING_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running'"

INSERT_RUN = f"""
INSERT INTO runs (status, started_at, heartbeat_at, triggered_by, owner, source, started_via, dry_run)
VALUES ('running', :now, :now, :triggered_by, :owner, :source, :started_via, :dry_run)
RETURNING {RUN_COLUMNS}
"""

# Every transition out of 'running' is guarded: a row that already finished (recovered, cancelled,
# or finished by a duplicate finisher) matches nothing, and the runs_finished_are_final trigger
# rejects any unguarded attempt.
_FINISH_RUN = """
UPDATE runs
SET status = :status,
    finished_at = :now,
    duration_s = {duration},
    error_message = :error_message,
    cancelled_by = :cancelled_by
WHERE id = :run_id AND status = 'running'
RETURNING {columns}
"""
FINISH_RUN: dict[Dialect, str] = {
    "sqlite": _FINISH_RUN.format(
        duration="round((julianday(:now) - julianday(started_at)) * 86400.0, 2)", columns=RUN_COLUMNS
    ),
    "postgres": _FINISH_RUN.format(
        duration="round(extract(epoch FROM :now::timestamptz - started_at)::numeric, 2)", columns=RUN_COLUMNS
    ),
}

# A run's own writes are its owner's: on PostgreSQL also only while the owner holds its lock, so an owner
# whose session the server cut (another replica may be recovering its run) writes nothing more.
_OWNER_GUARD: dict[Dialect, str] = {
    "sqlite": "owner = :owner",
    "postgres": "owner = :owner AND owner_is_alive(:owner)",
}

# The batch counters move in the same transaction as the catalog rows they count.
_RECORD_PROGRESS = """
UPDATE runs
SET created = created + :created,
    updated = updated + :updated,
    unchanged = unchanged + :unchanged,
    errors = errors + :errors,
    categories_created = categories_created + :categories_created,
    processed = processed + :processed,
    total = coalesce(:total, total),
    removed = removed + :removed,
    restored = restored + :restored,
    heartbeat_at = :now
WHERE id = :run_id AND status = 'running' AND {guard}
"""
RECORD_PROGRESS: dict[Dialect, str] = {
    dialect: _RECORD_PROGRESS.format(guard=guard) for dialect, guard in _OWNER_GUARD.items()
}

HEARTBEAT: dict[Dialect, str] = {
    dialect: f"UPDATE runs SET heartbeat_at = :now WHERE id = :run_id AND status = 'running' AND {guard}"
    for dialect, guard in _OWNER_GUARD.items()
}

REQUEST_CANCEL = """
UPDATE runs SET cancel_requested_by = coalesce(cancel_requested_by, :by)
WHERE status = 'running'
RETURNING id
"""

INSERT_RUN_ERROR = """
INSERT INTO run_errors (run_id, position, external_id, reason, recorded_at)
VALUES (?, ?, ?, ?, ?)
"""

INSERT_RUN_CHANGE = """
INSERT INTO run_changes (run_id, external_id, handle, kind, action, fields) VALUES (?, ?, ?, ?, ?, ?)
"""

# An optional filter's parameter is CAST where it is only tested for NULL: PostgreSQL must know its type
# there, and both backends read CAST the same way.
LIST_RUN_CHANGES = """
SELECT id, external_id, handle, kind, action, fields FROM run_changes
WHERE run_id = :run_id AND (CAST(:after_id AS BIGINT) IS NULL OR id > :after_id)
ORDER BY id
LIMIT :limit
"""

LIST_RUNS = f"""
SELECT {RUN_COLUMNS} FROM runs
WHERE (CAST(:status AS TEXT) IS NULL OR status = :status)
  AND (CAST(:before_id AS BIGINT) IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit
"""

LIST_RUN_ERRORS = """
SELECT id, position, external_id, reason, recorded_at FROM run_errors
WHERE run_id = :run_id AND (CAST(:after_id AS BIGINT) IS NULL OR id > :after_id)
ORDER BY id
LIMIT :limit
"""

# Retention never touches the newest run: it is what the status endpoint reports.
PRUNE_RUN_ERRORS = """
DELETE FROM run_errors
WHERE recorded_at < :cutoff AND run_id <> (SELECT max(id) FROM runs)
"""

PRUNE_RUNS = """
DELETE FROM runs
WHERE status <> 'running' AND started_at < :cutoff AND id <> (SELECT max(id) FROM runs)
  AND NOT EXISTS (SELECT 1 FROM products WHERE created_run = runs.id OR updated_run = runs.id)
  AND NOT EXISTS (SELECT 1 FROM categories WHERE created_run = runs.id)
"""

# --- /metrics: read at scrape time, so they count runs of every process sharing the file -------------

# The first part's empty times are typed, as PostgreSQL types a UNION's columns from its first parts.
# Dry runs are left out (they changed nothing): an alert on the last success must see real syncs only.
# One statement, so one consistent snapshot: totals per outcome (a small table kept by a trigger), the
# running run, the last finished run and the last success, each row tagged by ``kind``. Every part is an
# index lookup, so a scrape costs the same on a ledger of a million runs.
LEDGER_METRICS = """
SELECT 'total' AS kind, status, runs, created, updated, unchanged, errors, categories_created,
       duration_s, NULL AS processed, NULL AS total, CAST(NULL AS TIMESTAMPTZ) AS started_at,
       CAST(NULL AS TIMESTAMPTZ) AS finished_at
FROM run_totals
UNION ALL
SELECT 'running', status, 1, created, updated, unchanged, errors, categories_created,
       NULL, processed, total, started_at, NULL
FROM runs WHERE status = 'running'
UNION ALL
SELECT 'last_finished', status, 1, created, updated, unchanged, errors, categories_created,
       duration_s, processed, total, started_at, finished_at
FROM (SELECT * FROM runs WHERE status <> 'running' AND NOT dry_run ORDER BY id DESC LIMIT 1) AS finished
UNION ALL
SELECT 'last_success', 'success', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, finished_at
FROM (SELECT finished_at FROM runs WHERE status = 'success' AND NOT dry_run ORDER BY id DESC LIMIT 1) AS ok
"""

# --- the schedule: a tick is claimed by inserting its row, so one process claims each -----------------

TICK_CLAIMED = "SELECT 1 FROM schedule_ticks WHERE due_at = :due_at"

INSERT_TICK = """
INSERT INTO schedule_ticks (due_at, schedule, claimed_at, claimed_by, outcome, run_id, catch_up)
VALUES (:due_at, :schedule, :now, :owner, :outcome, :run_id, :catch_up)
"""

# Ticks go with the runs of their age (retention), but the newest stays: catch-up compares against it.
PRUNE_TICKS = """
DELETE FROM schedule_ticks
WHERE due_at < :cutoff AND due_at <> (SELECT max(due_at) FROM schedule_ticks)
"""

LATEST_TICK = "SELECT max(due_at) FROM schedule_ticks"

TICK_COUNTS = "SELECT outcome, count(*) FROM schedule_ticks GROUP BY outcome"
