"""Every SQL statement of the webhook outbox, in one place. All parameterised.

``:targets`` is a JSON array of target keys (one bound value, any length); a statement that takes it is
a dict by dialect.
"""

from service.database.access import Dialect
from service.database.list_params import each_dialect

# A target added now gets the runs that finish from now on, the one in progress included: with one
# running run at a time, runs finish in id order, so every id up to the newest finished one is done.
ADD_TARGET = """
INSERT INTO webhook_targets (target, label, since_run_id, added_at)
VALUES (:target, :label, (SELECT coalesce(max(id), 0) FROM runs WHERE status <> 'running'), :now)
ON CONFLICT (target) DO UPDATE SET label = excluded.label
"""

# On the read connection, once a second: whether there is anything to write at all.
HAS_WORK = each_dialect(
    """
SELECT EXISTS (
    SELECT 1 FROM webhook_targets t JOIN runs r ON r.id > t.since_run_id AND r.status <> 'running'
    WHERE t.target IN ({targets})
) OR EXISTS (
    SELECT 1 FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= :now
      AND target IN ({targets})
      AND (claimed_until IS NULL OR claimed_until < :now)
)
""",
    targets=":targets",
)

# One delivery per target for each run finished since the target's mark; the mark then moves on.
ENQUEUE = each_dialect(
    """
INSERT INTO webhook_deliveries (run_id, target, next_attempt_at, created_at)
SELECT r.id, t.target, :now, :now
FROM webhook_targets t JOIN runs r ON r.id > t.since_run_id AND r.status <> 'running'
WHERE t.target IN ({targets})
ON CONFLICT (run_id, target) DO NOTHING
""",
    targets=":targets",
)

_ADVANCE_MARKS = """
UPDATE webhook_targets
SET since_run_id = {larger}(since_run_id, (SELECT coalesce(max(id), 0) FROM runs WHERE status <> 'running'))
WHERE target IN ({{targets}})
"""
# SQLite's two-argument max() is PostgreSQL's greatest().
ADVANCE_MARKS: dict[Dialect, str] = {
    "sqlite": each_dialect(_ADVANCE_MARKS.format(larger="max"), targets=":targets")["sqlite"],
    "postgres": each_dialect(_ADVANCE_MARKS.format(larger="greatest"), targets=":targets")["postgres"],
}

# A claim is a lease: another process may take the delivery once it lapses (its claimer died).
CLAIM_DUE = each_dialect(
    """
UPDATE webhook_deliveries
SET claimed_by = :owner, claimed_until = :until
WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= :now
      AND target IN ({targets})
      AND (claimed_until IS NULL OR claimed_until < :now)
    ORDER BY id
    LIMIT :limit
)
RETURNING id, run_id, target, attempts
""",
    targets=":targets",
)

# Guarded by the claim: a claimer whose lease lapsed and was taken over records nothing.
RECORD_ATTEMPT = """
UPDATE webhook_deliveries
SET attempts = attempts + 1,
    status = :status,
    last_status = :last_status,
    last_error = :last_error,
    last_attempt_at = :now,
    next_attempt_at = coalesce(:next_attempt_at, next_attempt_at),
    delivered_at = :delivered_at,
    claimed_by = NULL,
    claimed_until = NULL
WHERE id = :id AND claimed_by = :owner AND status = 'pending'
"""

DELIVERIES_OF_RUN = """
SELECT d.id, t.label, d.status, d.attempts, d.last_status, d.last_error, d.last_attempt_at,
       d.next_attempt_at, d.delivered_at
FROM webhook_deliveries d JOIN webhook_targets t ON t.target = d.target
WHERE d.run_id = ?
ORDER BY d.id
"""
