-- Audit additions: totals per outcome that survive retention, runs per trigger, item errors with their run.

-- Totals per outcome over every run that ever finished, kept by a trigger as runs finish: reading them
-- costs nothing however long the ledger grows, and pruning old runs never lowers them (so the /metrics
-- counters read from here never go backwards). Never written by hand.
CREATE TABLE run_totals (
    status             TEXT    PRIMARY KEY CHECK (status IN ('success', 'error', 'cancelled')),
    runs               INTEGER NOT NULL DEFAULT 0,
    created            INTEGER NOT NULL DEFAULT 0,
    updated            INTEGER NOT NULL DEFAULT 0,
    unchanged          INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    categories_created INTEGER NOT NULL DEFAULT 0,
    duration_s         REAL    NOT NULL DEFAULT 0
);

-- Runs finished before this migration.
INSERT INTO run_totals (status, runs, created, updated, unchanged, errors, categories_created, duration_s)
SELECT status, count(*), sum(created), sum(updated), sum(unchanged), sum(errors), sum(categories_created),
       coalesce(sum(duration_s), 0)
FROM runs WHERE status <> 'running' GROUP BY status;

-- A run leaves 'running' exactly once (finished rows are final), so each run is added exactly once.
CREATE TRIGGER runs_finished_add_to_totals
AFTER UPDATE OF status ON runs
WHEN OLD.status = 'running' AND NEW.status <> 'running'
BEGIN
    INSERT OR IGNORE INTO run_totals (status) VALUES (NEW.status);
    UPDATE run_totals
    SET runs = runs + 1,
        created = created + NEW.created,
        updated = updated + NEW.updated,
        unchanged = unchanged + NEW.unchanged,
        errors = errors + NEW.errors,
        categories_created = categories_created + NEW.categories_created,
        duration_s = duration_s + coalesce(NEW.duration_s, 0)
    WHERE status = NEW.status;
END;

-- Retention deletes item errors by age.
CREATE INDEX run_errors_recorded_at ON run_errors (recorded_at);

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
