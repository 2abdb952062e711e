-- Notifications: each configured webhook URL is a target, and each run that finished after the target
-- was added gets one delivery row per target. Deliveries are made from the runs table after the fact,
-- so a run's outcome is never delayed by them, and a crash between a run's end and its notification
-- loses nothing: whichever process delivers next finds the run without its delivery.
CREATE TABLE webhook_targets (
    target       TEXT    PRIMARY KEY,   -- a hash of the full URL: the URL itself may carry a secret
    label        TEXT    NOT NULL,      -- the URL as shown, with user-info and query values redacted
    since_run_id INTEGER NOT NULL,      -- runs up to this id had finished before the target was added
    added_at     TEXT    NOT NULL
) WITHOUT ROWID;

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    target          TEXT    NOT NULL REFERENCES webhook_targets (target),
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_status     INTEGER,            -- the receiver's HTTP status at the last attempt, if it answered
    last_error      TEXT,
    last_attempt_at TEXT,
    next_attempt_at TEXT    NOT NULL,
    delivered_at    TEXT,
    created_at      TEXT    NOT NULL,
    -- A delivery being attempted: by whom, and until when the claim holds (a dead process's lapses).
    claimed_by      TEXT,
    claimed_until   TEXT,
    UNIQUE (run_id, target),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at) WHERE status = 'pending';

-- A delivery that was made or given up on is history.
CREATE TRIGGER webhook_deliveries_finished_are_final
BEFORE UPDATE ON webhook_deliveries
WHEN OLD.status <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'delivery is finished; its row is final');
END;
