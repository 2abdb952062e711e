-- How each run was started: by an admin over HTTP (triggered_by names the token), by the schedule, or
-- from the command line (triggered_by is cli:<user>).
ALTER TABLE runs ADD COLUMN started_via TEXT NOT NULL DEFAULT 'manual'
    CHECK (started_via IN ('manual', 'schedule', 'cli'));

-- Runs the CLI started before this column existed. A finished row is final, so the guard is lifted
-- for this one statement and put back as it was.
DROP TRIGGER runs_finished_are_final;
UPDATE runs SET started_via = 'cli' WHERE triggered_by LIKE 'cli:%';
CREATE TRIGGER runs_finished_are_final
BEFORE UPDATE ON runs
WHEN OLD.status <> 'running'
BEGIN
    SELECT RAISE(ABORT, 'run is finished; its row is final');
END;

-- One row per tick of the schedule, whichever process claimed it: the primary key is the rule that a
-- tick starts at most one run, however many processes share this file and wake for it.
CREATE TABLE schedule_ticks (
    due_at     TEXT    PRIMARY KEY,      -- the tick's due time, UTC, e.g. 2026-01-07T13:33:30.000Z
    schedule   TEXT    NOT NULL,         -- the expression (and time zone) it was due by
    claimed_at TEXT    NOT NULL,
    claimed_by TEXT    NOT NULL,         -- owner (host:pid:nonce) of the process that claimed it
    outcome    TEXT    NOT NULL CHECK (outcome IN ('started', 'skipped')),
    -- The run it started, or the run in progress that made it skip.
    run_id     INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    catch_up   INTEGER NOT NULL DEFAULT 0 CHECK (catch_up IN (0, 1))  -- 1: due while no process ran
) WITHOUT ROWID;
CREATE INDEX schedule_ticks_outcome ON schedule_ticks (outcome);
