-- The product catalog (the default sink) on PostgreSQL, as the SQLite catalog of migrations 0002-0009.
CREATE TABLE categories (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handle      text    NOT NULL UNIQUE,
    name        text    NOT NULL,
    created_run bigint  NOT NULL REFERENCES runs (id),
    created_at  timestamptz NOT NULL
);

CREATE TABLE products (
    id           bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id  text    NOT NULL UNIQUE,
    handle       text    NOT NULL UNIQUE,
    title        text    NOT NULL,
    description  text    NOT NULL,
    category_id  bigint  NOT NULL REFERENCES categories (id),
    price_minor  bigint  NOT NULL CHECK (price_minor >= 0),   -- exact: integer minor units
    currency     text    NOT NULL,
    brand        text,
    sku          text,
    stock        bigint,
    thumbnail    text,
    images       jsonb   NOT NULL DEFAULT '[]',
    tags         jsonb   NOT NULL DEFAULT '[]',
    metadata     jsonb   NOT NULL DEFAULT '{}',
    content_hash bigint  NOT NULL,
    source_hash  bigint,
    created_run  bigint  NOT NULL REFERENCES runs (id),
    updated_run  bigint  NOT NULL REFERENCES runs (id),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    archived_run bigint  REFERENCES runs (id) ON DELETE SET NULL,
    archived_at  timestamptz
);
CREATE INDEX products_category ON products (category_id);
CREATE INDEX products_created_run ON products (created_run);
CREATE INDEX products_updated_run ON products (updated_run);

-- What the Medusa sink knows of each shop it publishes to (as SQLite's medusa_products/categories).
CREATE TABLE medusa_products (
    target       text    NOT NULL,
    external_id  text    NOT NULL,
    product_id   text    NOT NULL,
    variant_id   text    NOT NULL,
    price_id     text    NOT NULL,
    handle       text    NOT NULL,
    content_hash bigint  NOT NULL,
    source_hash  bigint,
    synced_run   bigint  NOT NULL,
    synced_at    timestamptz NOT NULL,
    archived_run bigint,
    removing_run bigint,
    PRIMARY KEY (target, external_id)
);
CREATE UNIQUE INDEX medusa_products_product ON medusa_products (target, product_id);
CREATE UNIQUE INDEX medusa_products_handle ON medusa_products (target, handle);

CREATE TABLE medusa_categories (
    target      text NOT NULL,
    handle      text NOT NULL,
    category_id text NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (target, handle)
);
