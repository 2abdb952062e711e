"""Low-level database access: the SQLite connections (one writer, readers), transactions, read-only audits."""
