"""The vocabulary every room shares: what a batch did, an item that was skipped, a failed run. No I/O."""
