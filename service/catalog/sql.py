"""The SQL of the catalog (products and categories), in one place. Parameters are always bound.

The same statements run on SQLite and PostgreSQL, but for how a list parameter is unpacked: a statement
that takes one is a dict by dialect.
"""

from service.database.access import Dialect
from service.database.list_params import each_dialect

# The catalog's stored fingerprints of some products, by external id (read by the mapping workers).
# An archived product has no source fingerprint here, so its item is always mapped: it is restored.
SELECT_FINGERPRINTS = each_dialect(
    """
SELECT external_id, content_hash, CASE WHEN archived_at IS NULL THEN source_hash END
FROM products
WHERE external_id IN ({ids})
""",
    ids="?",
)

# The products of a batch already in the catalog.
SELECT_EXISTING = each_dialect(
    """
SELECT external_id, content_hash, source_hash, archived_at IS NOT NULL
FROM products
WHERE external_id IN ({ids})
""",
    ids="?",
)

# How many of a batch's products the catalog holds on offer with exactly the given fingerprints; the
# parameter is a JSON object of external id -> "content_hash source_hash". One text per product, compared
# whole: reading two numbers out of a nested array per product cost SQLite about twice as much.
COUNT_STORED_AS_READ: dict[Dialect, str] = {
    "sqlite": """
SELECT count(*) FROM json_each(?) AS item
JOIN products ON products.external_id = item.key
WHERE products.archived_at IS NULL
  AND item.value = products.content_hash || ' ' || products.source_hash
""",
    "postgres": """
SELECT count(*) FROM jsonb_each_text(?::jsonb) AS item
JOIN products ON products.external_id = item.key
WHERE products.archived_at IS NULL
  AND item.value = products.content_hash::text || ' ' || products.source_hash::text
""",
}

# The products on offer (not archived), in id order, a page at a time: compared with the feed.
OFFERED_IDS = """
SELECT external_id FROM products
WHERE archived_at IS NULL AND (CAST(:after AS TEXT) IS NULL OR external_id > :after)
ORDER BY external_id
LIMIT :limit
"""

# A dry run's removals: the products that would be archived or deleted, with their handles.
OFFERED_OF = each_dialect(
    """
SELECT external_id, handle FROM products
WHERE external_id IN ({ids}) AND archived_at IS NULL
""",
    ids=":ids",
)

# A dry run's updates: the stored fields, to say which ones would change.
SELECT_STORED = each_dialect(
    """
SELECT p.external_id, p.handle, p.title, p.description, c.handle AS category_handle, p.price_minor,
       p.currency, p.brand, p.sku, p.stock, p.thumbnail, p.images, p.tags, p.metadata
FROM products p LEFT JOIN categories c ON c.id = p.category_id
WHERE p.external_id IN ({ids})
""",
    ids="?",
)

ARCHIVE_PRODUCTS = each_dialect(
    """
UPDATE products SET archived_run = :run_id, archived_at = :now
WHERE external_id IN ({ids}) AND archived_at IS NULL
RETURNING external_id, handle
""",
    ids=":ids",
)

DELETE_PRODUCTS = each_dialect(
    """
DELETE FROM products WHERE external_id IN ({ids})
RETURNING external_id, handle
""",
    ids=":ids",
)

SELECT_CATEGORIES = "SELECT handle, name FROM categories"

ANY_PRODUCT = "SELECT EXISTS (SELECT 1 FROM products)"

INSERT_CATEGORY = """
INSERT INTO categories (handle, name, created_run, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (handle) DO NOTHING
"""

# The product statements take a row's first 17 fields (see ProductRow) as ?1 .. ?17, then the run's
# id (?18) and the batch's time (?19).
#
# A unique handle, chosen while the statement runs: the title's slug (?2), else the slug with the
# external id (?3), else that with -2, -3, ... A handle held by any *other* product counts as taken,
# even one renamed later in the batch, so every statement keeps the UNIQUE constraint; rows written
# earlier in the batch are already in the table, so one batch never gives a handle twice.
_FREE_HANDLE = """
CASE
    WHEN NOT EXISTS (SELECT 1 FROM products WHERE handle = ?2 AND external_id <> ?1) THEN ?2
    WHEN NOT EXISTS (SELECT 1 FROM products WHERE handle = ?3 AND external_id <> ?1) THEN ?3
    ELSE (
        WITH RECURSIVE suffix (n) AS (
            SELECT 2
            UNION ALL
            SELECT n + 1 FROM suffix
            WHERE EXISTS (SELECT 1 FROM products WHERE handle = ?3 || '-' || n AND external_id <> ?1)
        )
        SELECT ?3 || '-' || max(n) FROM suffix
    )
END
"""
_CATEGORY_ID = "(SELECT id FROM categories WHERE handle = ?6)"

INSERT_PRODUCT = f"""
INSERT INTO products (
    external_id, handle, title, description, category_id, price_minor, currency, brand, sku, stock,
    thumbnail, images, tags, metadata, content_hash, source_hash, created_run, updated_run, created_at,
    updated_at
) VALUES (
    ?1, {_FREE_HANDLE}, ?4, ?5, {_CATEGORY_ID}, ?7, ?8, ?9, ?10, ?11,
    ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18, ?19,
    ?19
)
"""

# PostgreSQL: a batch's new products whose title's slug is free (held by no product, and the first of the
# batch's products sharing it, in feed order) are COPYed into the catalog: a statement per row would cost
# a round of the server's executor each. The others are inserted by INSERT_PRODUCT after them, which
# picks a free handle as on SQLite. Within the batch's transaction (the write lock held), what these
# read is what the COPY finds.
TAKEN_HANDLES = each_dialect("SELECT handle FROM products WHERE handle IN ({handles})", handles="?")
CATEGORY_IDS = each_dialect("SELECT handle, id FROM categories WHERE handle IN ({handles})", handles="?")
COPIED_PRODUCT_COLUMNS = (
    "external_id",
    "handle",
    "title",
    "description",
    "category_id",
    "price_minor",
    "currency",
    "brand",
    "sku",
    "stock",
    "thumbnail",
    "images",
    "tags",
    "metadata",
    "content_hash",
    "source_hash",
    "created_run",
    "updated_run",
    "created_at",
    "updated_at",
)

# A product whose title gives the handle it already has keeps it (links to it stay valid).
UPDATE_PRODUCT = f"""
UPDATE products SET
    handle = CASE WHEN handle IN (?2, ?3) THEN handle ELSE {_FREE_HANDLE} END,
    title = ?4, description = ?5, category_id = {_CATEGORY_ID}, price_minor = ?7, currency = ?8,
    brand = ?9, sku = ?10, stock = ?11, thumbnail = ?12, images = ?13, tags = ?14, metadata = ?15,
    content_hash = ?16, source_hash = ?17, updated_run = ?18, updated_at = ?19,
    archived_run = NULL, archived_at = NULL
WHERE external_id = ?1
"""

# An unchanged product whose item arrived in another form: only its fingerprint is brought up to date
# (the product itself is not rewritten, so updated_run still names the run that last changed it).
UPDATE_SOURCE_HASH = "UPDATE products SET source_hash = ? WHERE external_id = ?"
