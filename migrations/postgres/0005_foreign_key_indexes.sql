-- Every foreign key's columns lead an index, as on SQLite (migrations/0011): PostgreSQL indexes the
-- referenced side of a key, not the referring one, so deleting a run (retention) would scan each
-- referring table, the whole catalog for products.archived_run, once per pruned run.
CREATE INDEX products_archived_run ON products (archived_run) WHERE archived_run IS NOT NULL;
CREATE INDEX categories_created_run ON categories (created_run);
CREATE INDEX schedule_ticks_run ON schedule_ticks (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX webhook_deliveries_run ON webhook_deliveries (run_id);
CREATE INDEX webhook_deliveries_target ON webhook_deliveries (target);
