-- A dry run reads and compares everything and writes nothing to the sink: a ledger row like any other
-- (the same one-running rule), whose counts and run_changes say what a real run would do.
ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0 CHECK (dry_run IN (0, 1));
