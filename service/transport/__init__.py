"""What makes the sync fast: mapping in worker processes, rows packed across, giving way to requests."""
