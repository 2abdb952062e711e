-- The run ledger: one row per sync run. Status is derived from the newest row, never from memory.
CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    status              TEXT    NOT NULL CHECK (status IN ('running', 'success', 'error', 'cancelled')),
    started_at          TEXT    NOT NULL,          -- ISO 8601 UTC, e.g. 2026-01-07T13:33:12.000Z
    finished_at         TEXT,
    duration_s          REAL,
    heartbeat_at        TEXT    NOT NULL,          -- last progress; a stale heartbeat marks a hung run
    error_message       TEXT,
    created             INTEGER NOT NULL DEFAULT 0 CHECK (created >= 0),
    updated             INTEGER NOT NULL DEFAULT 0 CHECK (updated >= 0),
    unchanged           INTEGER NOT NULL DEFAULT 0 CHECK (unchanged >= 0),
    errors              INTEGER NOT NULL DEFAULT 0 CHECK (errors >= 0),
    categories_created  INTEGER NOT NULL DEFAULT 0 CHECK (categories_created >= 0),
    processed           INTEGER NOT NULL DEFAULT 0 CHECK (processed >= 0),
    total               INTEGER,                   -- what the feed announced, when it did
    triggered_by        TEXT    NOT NULL,          -- the admin token's name, never the token
    cancel_requested_by TEXT,                      -- set by any process; the owner stops at its next check
    cancelled_by        TEXT,
    owner               TEXT    NOT NULL,          -- host:pid:nonce of the process running it
    source              TEXT,
    -- A run is finished exactly when it has left 'running'.
    CHECK ((status = 'running') = (finished_at IS NULL)),
    CHECK ((status = 'error') = (error_message IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_by IS NOT NULL))
);

-- At most one running run, across every process sharing this file.
CREATE UNIQUE INDEX runs_one_running ON runs (status) WHERE status = 'running';
CREATE INDEX runs_status_started ON runs (status, id);

-- A finished run is history: it can never change again (a late or duplicate finisher fails here).
CREATE TRIGGER runs_finished_are_final
BEFORE UPDATE ON runs
WHEN OLD.status <> 'running'
BEGIN
    SELECT RAISE(ABORT, 'run is finished; its row is final');
END;

-- Runs are only ever created as 'running'.
CREATE TRIGGER runs_start_running
BEFORE INSERT ON runs
WHEN NEW.status <> 'running'
BEGIN
    SELECT RAISE(ABORT, 'a run must start as running');
END;

-- Items of a run that failed validation or mapping; the run goes on without them.
CREATE TABLE run_errors (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,                  -- 0-based position of the item in the feed
    external_id TEXT,                              -- upstream id, when it could be read
    reason      TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL
);
CREATE INDEX run_errors_run_position ON run_errors (run_id, position);
