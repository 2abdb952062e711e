-- Owner liveness in SQL, so the ledger's guarded writes can check it in their own transaction: each
-- process holds a session-level advisory lock keyed by its owner id for as long as it lives (the
-- server drops it when the session ends). The key is the first 64 bits of the id's SHA-256.
CREATE FUNCTION owner_lock_key(owner text) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT ('x' || left(encode(sha256(convert_to(owner, 'UTF8')), 'hex'), 16))::bit(64)::bigint
$$;

-- pg_locks shows a bigint advisory key as two 32-bit halves (classid high, objid low), objsubid 1.
CREATE FUNCTION owner_is_alive(owner text) RETURNS boolean LANGUAGE sql STABLE STRICT AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND classid::bigint = (owner_lock_key(owner) >> 32) & 4294967295
          AND objid::bigint = owner_lock_key(owner) & 4294967295
    )
$$;

-- The catalog's JSON columns keep the text the service wrote, byte for byte, as SQLite does: jsonb
-- would rewrite it (spacing, key order), and a dry run compares the stored text with the new one.
ALTER TABLE products
    ALTER COLUMN images DROP DEFAULT,
    ALTER COLUMN tags DROP DEFAULT,
    ALTER COLUMN metadata DROP DEFAULT;
ALTER TABLE products
    ALTER COLUMN images TYPE json USING images::text::json,
    ALTER COLUMN tags TYPE json USING tags::text::json,
    ALTER COLUMN metadata TYPE json USING metadata::text::json;
ALTER TABLE products
    ALTER COLUMN images SET DEFAULT '[]',
    ALTER COLUMN tags SET DEFAULT '[]',
    ALTER COLUMN metadata SET DEFAULT '{}';
ALTER TABLE run_changes ALTER COLUMN fields TYPE json USING fields::text::json;

-- The audit views of the SQLite ledger, with the same columns, for psql.
CREATE VIEW run_summary AS
SELECT
    id,
    status,
    triggered_by,
    started_at,
    finished_at,
    round(duration_s::numeric, 2) AS duration_s,
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

CREATE VIEW runs_by_trigger AS
SELECT
    triggered_by,
    status,
    count(*) AS runs,
    min(started_at) AS first_started_at,
    max(started_at) AS last_started_at,
    round(avg(duration_s)::numeric, 2) AS avg_duration_s,
    round(max(duration_s)::numeric, 2) AS max_duration_s
FROM runs
GROUP BY triggered_by, status
ORDER BY triggered_by, status;

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
