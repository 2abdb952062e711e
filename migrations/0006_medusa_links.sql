-- What the Medusa sink knows of each shop it publishes to: per upstream product, the Medusa ids that an
-- update must send (so the variant, its SKU and its price history survive) and the hash of what was last
-- published (so an identical re-sync sends nothing); per category, its Medusa id.
-- ``target`` is the shop (its backend URL): links made for one shop are never used for another.
CREATE TABLE medusa_products (
    target       TEXT    NOT NULL,
    external_id  TEXT    NOT NULL,
    product_id   TEXT    NOT NULL,
    variant_id   TEXT    NOT NULL,
    price_id     TEXT    NOT NULL,
    handle       TEXT    NOT NULL,
    content_hash INTEGER NOT NULL,
    source_hash  INTEGER,
    synced_run   INTEGER NOT NULL,   -- the run whose confirmed batch wrote this link last
    synced_at    TEXT    NOT NULL,
    PRIMARY KEY (target, external_id)
);
CREATE UNIQUE INDEX medusa_products_product ON medusa_products (target, product_id);
CREATE UNIQUE INDEX medusa_products_handle ON medusa_products (target, handle);

CREATE TABLE medusa_categories (
    target      TEXT NOT NULL,
    handle      TEXT NOT NULL,
    category_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (target, handle)
);
