"""The SQLite ledger: connections, migrations and the runs table."""
