"""The sync engine (feed -> mapping -> sink, as a pipeline) and the runner that owns the background run."""
