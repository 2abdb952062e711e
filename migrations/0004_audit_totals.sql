-- Audit additions: totals that survive retention, per-outcome summaries, and item errors with their run.

-- What retention removed, per outcome: so totals derived from the ledger (the /metrics counters)
-- never go backwards when old runs are pruned. Filled by the trigger below, never by hand.
CREATE TABLE pruned_run_totals (
    status             TEXT    PRIMARY KEY CHECK (status IN ('success', 'error', 'cancelled')),
    runs               INTEGER NOT NULL DEFAULT 0,
    created            INTEGER NOT NULL DEFAULT 0,
    updated            INTEGER NOT NULL DEFAULT 0,
    unchanged          INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    categories_created INTEGER NOT NULL DEFAULT 0,
    duration_s         REAL    NOT NULL DEFAULT 0
);

CREATE TRIGGER runs_deleted_keep_totals
BEFORE DELETE ON runs
WHEN OLD.status <> 'running'
BEGIN
    INSERT OR IGNORE INTO pruned_run_totals (status) VALUES (OLD.status);
    UPDATE pruned_run_totals
    SET runs = runs + 1,
        created = created + OLD.created,
        updated = updated + OLD.updated,
        unchanged = unchanged + OLD.unchanged,
        errors = errors + OLD.errors,
        categories_created = categories_created + OLD.categories_created,
        duration_s = duration_s + coalesce(OLD.duration_s, 0)
    WHERE status = OLD.status;
END;

-- Retention deletes item errors by age.
CREATE INDEX run_errors_recorded_at ON run_errors (recorded_at);

-- One row per outcome, over every run ever recorded (pruned ones included): how many, what they did.
CREATE VIEW run_totals AS
SELECT
    status,
    sum(runs) AS runs,
    sum(created) AS created,
    sum(updated) AS updated,
    sum(unchanged) AS unchanged,
    sum(errors) AS errors,
    sum(categories_created) AS categories_created,
    round(sum(duration_s), 2) AS duration_s
FROM (
    SELECT status, count(*) AS runs, sum(created) AS created, sum(updated) AS updated,
           sum(unchanged) AS unchanged, sum(errors) AS errors,
           sum(categories_created) AS categories_created, coalesce(sum(duration_s), 0) AS duration_s
    FROM runs GROUP BY status
    UNION ALL
    SELECT status, runs, created, updated, unchanged, errors, categories_created, duration_s
    FROM pruned_run_totals
)
GROUP BY status;

-- Per trigger (admin token name or cli:user) and outcome: who ran what, when first and last, how long.
CREATE VIEW runs_by_trigger AS
SELECT
    triggered_by,
    status,
    count(*) AS runs,
    min(started_at) AS first_started_at,
    max(started_at) AS last_started_at,
    round(avg(duration_s), 2) AS avg_duration_s,
    round(max(duration_s), 2) AS max_duration_s
FROM runs
GROUP BY triggered_by, status
ORDER BY triggered_by, status;

-- Item errors next to the run they belong to, newest run first.
CREATE VIEW run_error_detail AS
SELECT
    e.run_id,
    r.started_at AS run_started_at,
    r.triggered_by,
    r.status AS run_status,
    e.position,
    coalesce(e.external_id, '') AS external_id,
    e.reason,
    e.recorded_at
FROM run_errors AS e
JOIN runs AS r ON r.id = e.run_id
ORDER BY e.run_id DESC, e.position;
