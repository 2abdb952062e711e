"""The benchmark's percentiles are nearest-rank: a p99 is a sample that 99% of the samples do not pass."""

from __future__ import annotations

from bench.percentiles import percentile


def test_a_p99_of_fewer_than_a_hundred_samples_is_the_slowest_one() -> None:
    samples = [float(n) for n in range(1, 51)]
    assert percentile(samples, 0.99) == 50.0


def test_a_p99_of_two_hundred_samples_leaves_the_two_slowest_above_it() -> None:
    samples = [float(n) for n in range(200, 0, -1)]  # any order
    assert percentile(samples, 0.99) == 198.0
    assert sum(sample > percentile(samples, 0.99) for sample in samples) == 2


def test_the_median_and_the_edges() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.99) == 0.0
