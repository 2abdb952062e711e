-- The run ledger on PostgreSQL: the same rules as the SQLite ledger, enforced by the server, so they
-- hold across replicas on several hosts. Timestamps are timestamptz (UTC on the wire).
CREATE TABLE runs (
    id                  bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status              text    NOT NULL CHECK (status IN ('running', 'success', 'error', 'cancelled')),
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    duration_s          double precision,
    heartbeat_at        timestamptz NOT NULL,
    error_message       text,
    created             bigint  NOT NULL DEFAULT 0 CHECK (created >= 0),
    updated             bigint  NOT NULL DEFAULT 0 CHECK (updated >= 0),
    unchanged           bigint  NOT NULL DEFAULT 0 CHECK (unchanged >= 0),
    errors              bigint  NOT NULL DEFAULT 0 CHECK (errors >= 0),
    categories_created  bigint  NOT NULL DEFAULT 0 CHECK (categories_created >= 0),
    processed           bigint  NOT NULL DEFAULT 0 CHECK (processed >= 0),
    total               bigint,
    triggered_by        text    NOT NULL,
    cancel_requested_by text,
    cancelled_by        text,
    owner               text    NOT NULL,   -- the owning process; its advisory lock tells whether it lives
    source              text,
    started_via         text    NOT NULL DEFAULT 'manual' CHECK (started_via IN ('manual', 'schedule', 'cli')),
    removed             bigint  NOT NULL DEFAULT 0 CHECK (removed >= 0),
    restored            bigint  NOT NULL DEFAULT 0 CHECK (restored >= 0),
    dry_run             boolean NOT NULL DEFAULT false,
    CHECK ((status = 'running') = (finished_at IS NULL)),
    CHECK ((status = 'error') = (error_message IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_by IS NOT NULL))
);

-- At most one running run, across every replica on this database.
CREATE UNIQUE INDEX runs_one_running ON runs (status) WHERE status = 'running';
CREATE INDEX runs_status_id ON runs (status, id);

CREATE FUNCTION runs_finished_are_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'run is finished; its row is final' USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

-- A finished run is history: it can never change again (a late or fenced-off writer fails here).
CREATE TRIGGER runs_finished_are_final
BEFORE UPDATE ON runs
FOR EACH ROW WHEN (OLD.status <> 'running')
EXECUTE FUNCTION runs_finished_are_final();

CREATE FUNCTION runs_start_running() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a run must start as running' USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER runs_start_running
BEFORE INSERT ON runs
FOR EACH ROW WHEN (NEW.status <> 'running')
EXECUTE FUNCTION runs_start_running();

CREATE TABLE run_errors (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      bigint  NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position    bigint  NOT NULL,
    external_id text,
    reason      text    NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX run_errors_run_position ON run_errors (run_id, position);
CREATE INDEX run_errors_recorded_at ON run_errors (recorded_at);

CREATE TABLE run_changes (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      bigint  NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    external_id text    NOT NULL,
    handle      text,
    kind        text    NOT NULL CHECK (kind IN ('create', 'update', 'remove', 'restore')),
    action      text    CHECK (action IN ('archive', 'delete')),
    fields      jsonb,
    CHECK ((kind = 'remove') = (action IS NOT NULL))
);
CREATE INDEX run_changes_run ON run_changes (run_id, id);

-- Totals per outcome over every real (not dry) run that ever finished; retention never lowers them.
CREATE TABLE run_totals (
    status             text    PRIMARY KEY CHECK (status IN ('success', 'error', 'cancelled')),
    runs               bigint  NOT NULL DEFAULT 0,
    created            bigint  NOT NULL DEFAULT 0,
    updated            bigint  NOT NULL DEFAULT 0,
    unchanged          bigint  NOT NULL DEFAULT 0,
    errors             bigint  NOT NULL DEFAULT 0,
    categories_created bigint  NOT NULL DEFAULT 0,
    duration_s         double precision NOT NULL DEFAULT 0
);

CREATE FUNCTION runs_finished_add_to_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_totals AS t (status, runs, created, updated, unchanged, errors, categories_created,
                                 duration_s)
    VALUES (NEW.status, 1, NEW.created, NEW.updated, NEW.unchanged, NEW.errors, NEW.categories_created,
            coalesce(NEW.duration_s, 0))
    ON CONFLICT (status) DO UPDATE SET
        runs = t.runs + 1,
        created = t.created + excluded.created,
        updated = t.updated + excluded.updated,
        unchanged = t.unchanged + excluded.unchanged,
        errors = t.errors + excluded.errors,
        categories_created = t.categories_created + excluded.categories_created,
        duration_s = t.duration_s + excluded.duration_s;
    RETURN NULL;
END;
$$;

-- A run leaves 'running' exactly once (finished rows are final), so each run is added exactly once.
CREATE TRIGGER runs_finished_add_to_totals
AFTER UPDATE OF status ON runs
FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running' AND NOT NEW.dry_run)
EXECUTE FUNCTION runs_finished_add_to_totals();

-- One row per schedule tick, whichever replica claimed it: the key gives each tick to one of them.
CREATE TABLE schedule_ticks (
    due_at     timestamptz PRIMARY KEY,
    schedule   text    NOT NULL,
    claimed_at timestamptz NOT NULL,
    claimed_by text    NOT NULL,
    outcome    text    NOT NULL CHECK (outcome IN ('started', 'skipped')),
    run_id     bigint  REFERENCES runs (id) ON DELETE SET NULL,
    catch_up   boolean NOT NULL DEFAULT false
);
CREATE INDEX schedule_ticks_outcome ON schedule_ticks (outcome);
