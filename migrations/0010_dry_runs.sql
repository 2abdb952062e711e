-- A dry run reads and compares everything and writes nothing to the sink: a ledger row like any other
-- (the same one-running rule), whose counts and run_changes say what a real run would do.
ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1));

-- The totals /metrics reads count what syncs did to the catalog: a dry run changed nothing, so it is
-- left out of them (its own row still tells what it found).
DROP TRIGGER runs_finished_add_to_totals;
CREATE TRIGGER runs_finished_add_to_totals
AFTER UPDATE OF status ON runs
WHEN OLD.status = 'running' AND NEW.status <> 'running' AND NEW.dry_run = 0
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

-- The audit summary says which runs were dry runs.
DROP VIEW run_summary;
CREATE VIEW run_summary AS
SELECT
    id,
    status,
    triggered_by,
    started_at,
    finished_at,
    round(duration_s, 2) AS duration_s,
    created,
    updated,
    unchanged,
    errors,
    categories_created,
    processed,
    total,
    coalesce(error_message, '') AS error_message,
    coalesce(cancelled_by, '') AS cancelled_by,
    started_via,
    dry_run,
    removed,
    restored
FROM runs
ORDER BY id DESC;
