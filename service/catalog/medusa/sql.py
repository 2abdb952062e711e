"""The Medusa sink's local knowledge (migration 0006), in one place. Parameters are always bound.

A statement that takes a list parameter is a dict by dialect; the rest run on SQLite and PostgreSQL alike.
"""

from service.database.list_params import each_dialect, json_array

__all__ = ["json_array"]

ANY_LINK = "SELECT EXISTS (SELECT 1 FROM medusa_products WHERE target = ?)"

# The mapping workers' fingerprint lookup: the scope (?1, the shop) comes before the ids.
# An archived product (a draft now) has no source fingerprint, so its item is mapped and sent: it is
# restored.
FINGERPRINTS = each_dialect(
    """
SELECT external_id, content_hash,
       CASE WHEN archived_run IS NULL AND removing_run IS NULL THEN source_hash END
FROM medusa_products
WHERE target = ?1 AND external_id IN ({ids})
""",
    ids="?2",
)

SELECT_LINKS = each_dialect(
    """
SELECT external_id, product_id, variant_id, price_id, handle, content_hash, source_hash,
       archived_run IS NOT NULL, removing_run IS NOT NULL
FROM medusa_products
WHERE target = ?1 AND external_id IN ({ids})
""",
    ids="?2",
)

# Handles our links hold, for choosing a new product's handle.
SELECT_LINKED_HANDLES = each_dialect(
    """
SELECT handle, external_id FROM medusa_products
WHERE target = ?1 AND handle IN ({handles})
""",
    handles="?2",
)

# A Medusa product is linked to one upstream id: a link it had to another id (an adoption moved it) goes.
DROP_OTHER_LINKS = """
DELETE FROM medusa_products WHERE target = ?1 AND product_id = ?2 AND external_id <> ?3
"""

UPSERT_LINK = """
INSERT INTO medusa_products (target, external_id, product_id, variant_id, price_id, handle, content_hash,
                             source_hash, synced_run, synced_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (target, external_id) DO UPDATE SET
    product_id = excluded.product_id, variant_id = excluded.variant_id, price_id = excluded.price_id,
    handle = excluded.handle, content_hash = excluded.content_hash, source_hash = excluded.source_hash,
    synced_run = excluded.synced_run, synced_at = excluded.synced_at, archived_run = NULL,
    removing_run = NULL
"""

# The products this service published in the shop and still offers there, in id order, a page at a time.
OFFERED_IDS = """
SELECT external_id FROM medusa_products
WHERE target = ?1 AND archived_run IS NULL AND (CAST(?2 AS TEXT) IS NULL OR external_id > ?2)
ORDER BY external_id
LIMIT ?3
"""

# Before a removal request: what the shop holds of the product is unsure until the answer is recorded.
REMOVING_LINK = "UPDATE medusa_products SET removing_run = ?3 WHERE target = ?1 AND external_id = ?2"

ARCHIVE_LINK = """
UPDATE medusa_products SET archived_run = ?3, removing_run = NULL WHERE target = ?1 AND external_id = ?2
"""

DROP_LINK = "DELETE FROM medusa_products WHERE target = ?1 AND external_id = ?2"

UPDATE_SOURCE_HASH = "UPDATE medusa_products SET source_hash = ?3 WHERE target = ?1 AND external_id = ?2"

SELECT_CATEGORIES = "SELECT handle, category_id, name FROM medusa_categories WHERE target = ?"

UPSERT_CATEGORY = """
INSERT INTO medusa_categories (target, handle, category_id, name) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (target, handle) DO UPDATE SET category_id = excluded.category_id, name = excluded.name
"""
