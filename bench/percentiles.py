"""Percentiles of measured samples, one definition for every part of the benchmark."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest sample that at least ``p`` of the samples do not pass.

    So a p99 of fewer than 100 samples is their slowest one, and of 200 the third slowest.
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)] if ordered else 0.0
