"""Benchmarks: scripts that print figures; speed and memory goals are measured here, not in tests."""
