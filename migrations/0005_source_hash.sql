-- A fingerprint of each product's upstream item exactly as it was last received (its bytes, with the
-- currency and the mapping's version). An identical re-sync compares it before validating anything: an
-- item whose fingerprint is unchanged needs no validation or mapping, which were most of the time such
-- a sync took. NULL for products synced before this migration; their next sync fills it in.
ALTER TABLE products ADD COLUMN source_hash INTEGER;
