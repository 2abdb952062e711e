"""The runs ledger: runs and their rules, owner liveness, migrations, retention, the metrics snapshot."""
