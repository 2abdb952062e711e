"""product-sync: pulls a product catalog from an upstream feed into SQLite, with an auditable run ledger."""
