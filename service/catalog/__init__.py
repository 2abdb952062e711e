"""The catalog side: mapping feed items to rows, the sink interface, and the SQLite catalog with its SQL."""
