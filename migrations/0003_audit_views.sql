-- Read-only views for auditors using the sqlite3 shell.
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
    coalesce(cancelled_by, '') AS cancelled_by
FROM runs
ORDER BY id DESC;
