-- Products gone upstream. A run that read the whole feed may archive or delete the products the feed
-- no longer lists (SYNC_REMOVED_PRODUCTS); an archived product that comes back is restored.
ALTER TABLE runs ADD COLUMN removed INTEGER NOT NULL DEFAULT 0 CHECK (removed >= 0);
ALTER TABLE runs ADD COLUMN restored INTEGER NOT NULL DEFAULT 0 CHECK (restored >= 0);

-- An archived product stays in the catalog (its history and handle with it) but is no longer offered.
ALTER TABLE products ADD COLUMN archived_run INTEGER REFERENCES runs (id) ON DELETE SET NULL;
ALTER TABLE products ADD COLUMN archived_at TEXT;
-- In a shop, an archived product is a draft: the link remembers the run that made it one.
ALTER TABLE medusa_products ADD COLUMN archived_run INTEGER;
-- A removal sent to the shop whose answer was not recorded yet (set before the request): until it is,
-- the product may or may not be a draft (or deleted) there, so it is sent again when it comes back.
ALTER TABLE medusa_products ADD COLUMN removing_run INTEGER;

-- What a run changed product by product, beyond what the products table tells: the products it
-- removed (archived or deleted) and restored, with the handle they had.
CREATE TABLE run_changes (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    external_id TEXT    NOT NULL,
    handle      TEXT,
    kind        TEXT    NOT NULL CHECK (kind IN ('create', 'update', 'remove', 'restore')),
    action      TEXT    CHECK (action IN ('archive', 'delete')),  -- how a product was removed
    fields      TEXT,                                             -- JSON array: the fields an update changes
    CHECK ((kind = 'remove') = (action IS NOT NULL))
);
CREATE INDEX run_changes_run ON run_changes (run_id, id);
