-- The product catalog the sync writes into (the default sink).
CREATE TABLE categories (
    id          INTEGER PRIMARY KEY,
    handle      TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_run INTEGER NOT NULL REFERENCES runs (id),
    created_at  TEXT NOT NULL
);

CREATE TABLE products (
    id           INTEGER PRIMARY KEY,
    external_id  TEXT    NOT NULL UNIQUE,          -- the upstream id: what matches a product on later runs
    handle       TEXT    NOT NULL UNIQUE,          -- slug of the title, made unique on collision
    title        TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    category_id  INTEGER NOT NULL REFERENCES categories (id),
    price_minor  INTEGER NOT NULL CHECK (price_minor >= 0),  -- exact: integer minor units, never a float
    currency     TEXT    NOT NULL,
    brand        TEXT,
    sku          TEXT,
    stock        INTEGER,
    thumbnail    TEXT,
    images       TEXT    NOT NULL DEFAULT '[]',    -- JSON array
    tags         TEXT    NOT NULL DEFAULT '[]',    -- JSON array
    metadata     TEXT    NOT NULL DEFAULT '{}',    -- JSON object: upstream fields kept as they came
    content_hash INTEGER NOT NULL,                 -- unchanged content is detected without reading rows
    created_run  INTEGER NOT NULL REFERENCES runs (id),
    updated_run  INTEGER NOT NULL REFERENCES runs (id),
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX products_category ON products (category_id);
CREATE INDEX products_created_run ON products (created_run);
CREATE INDEX products_updated_run ON products (updated_run);
