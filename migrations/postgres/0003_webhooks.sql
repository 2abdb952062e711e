-- The webhook outbox on PostgreSQL (as SQLite's migration 0008).
CREATE TABLE webhook_targets (
    target       text    PRIMARY KEY,
    label        text    NOT NULL,
    since_run_id bigint  NOT NULL,
    added_at     timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          bigint  NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    target          text    NOT NULL REFERENCES webhook_targets (target),
    status          text    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_status     integer,
    last_error      text,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL,
    claimed_by      text,
    claimed_until   timestamptz,
    UNIQUE (run_id, target),
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE FUNCTION webhook_deliveries_finished_are_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'delivery is finished; its row is final' USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER webhook_deliveries_finished_are_final
BEFORE UPDATE ON webhook_deliveries
FOR EACH ROW WHEN (OLD.status <> 'pending')
EXECUTE FUNCTION webhook_deliveries_finished_are_final();
