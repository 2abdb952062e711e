"""Every SQL statement of the ledger, in one place. All parameterised."""

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
FINISH_RUN = f"""
UPDATE runs
SET status = :status,
    finished_at = :now,
    duration_s = round((julianday(:now) - julianday(started_at)) * 86400.0, 2),
    error_message = :error_message,
    cancelled_by = :cancelled_by
WHERE id = :run_id AND status = 'running'
RETURNING {RUN_COLUMNS}
"""

# The batch counters move in the same transaction as the catalog rows they count.
RECORD_PROGRESS = """
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
WHERE id = :run_id AND status = 'running'
"""

HEARTBEAT = "UPDATE runs SET heartbeat_at = :now WHERE id = :run_id AND status = 'running'"

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

LIST_RUN_CHANGES = """
SELECT id, external_id, handle, kind, action, fields FROM run_changes
WHERE run_id = :run_id AND (:after_id IS NULL OR id > :after_id)
ORDER BY id
LIMIT :limit
"""

LIST_RUNS = f"""
SELECT {RUN_COLUMNS} FROM runs
WHERE (:status IS NULL OR status = :status) AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit
"""

LIST_RUN_ERRORS = """
SELECT id, position, external_id, reason, recorded_at FROM run_errors
WHERE run_id = :run_id AND (:after_id IS NULL OR id > :after_id)
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

# Dry runs are left out (they changed nothing): an alert on the last success must see real syncs only.
# One statement, so one consistent snapshot: totals per outcome (a small table kept by a trigger), the
# running run, the last finished run and the last success, each row tagged by ``kind``. Every part is an
# index lookup, so a scrape costs the same on a ledger of a million runs.
LEDGER_METRICS = """
SELECT 'total' AS kind, status, runs, created, updated, unchanged, errors, categories_created,
       duration_s, NULL AS processed, NULL AS total, NULL AS started_at, NULL AS finished_at
FROM run_totals
UNION ALL
SELECT 'running', status, 1, created, updated, unchanged, errors, categories_created,
       NULL, processed, total, started_at, NULL
FROM runs WHERE status = 'running'
UNION ALL
SELECT 'last_finished', status, 1, created, updated, unchanged, errors, categories_created,
       duration_s, processed, total, started_at, finished_at
FROM (SELECT * FROM runs WHERE status <> 'running' AND dry_run = 0 ORDER BY id DESC LIMIT 1)
UNION ALL
SELECT 'last_success', 'success', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, finished_at
FROM (SELECT finished_at FROM runs WHERE status = 'success' AND dry_run = 0 ORDER BY id DESC LIMIT 1)
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

SCHEMA_VERSION = "SELECT max(version) FROM schema_migrations"
