"""The sync engine: source -> mapping -> sink, and the runner that owns the background run."""
