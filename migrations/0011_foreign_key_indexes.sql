-- Every foreign key's columns lead an index. Deleting a parent row (retention deleting a run) makes
-- SQLite look for the rows that refer to it, and without an index that is a scan of the whole table:
-- for products.archived_run, one scan of the catalog per pruned run (3,000 old runs beside 20,000
-- products took a minute; see docs/benchmarks.md). Partial where the column is mostly NULL, which
-- such a lookup (column = value) can still use.
CREATE INDEX products_archived_run ON products (archived_run) WHERE archived_run IS NOT NULL;
CREATE INDEX categories_created_run ON categories (created_run);
CREATE INDEX schedule_ticks_run ON schedule_ticks (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX webhook_deliveries_run ON webhook_deliveries (run_id);
CREATE INDEX webhook_deliveries_target ON webhook_deliveries (target);
