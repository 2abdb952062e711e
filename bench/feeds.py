"""The benchmark's data: the built-in upstream's products, written once as NDJSON files and cached.

Generating a product in Python costs more than syncing it, so the upstream serves a prepared file
(sendfile, no CPU) instead of generating while the sync runs; sqlite-utils reads the same file.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson

from service.demo_upstream.products import demo_product

_BLOCK = 10_000


def _lines(start: int, stop: int, variant: int) -> bytes:  # indexes: the upstream ids are index + 1
    return b"".join(
        orjson.dumps(demo_product(index, 0, variant), option=orjson.OPT_APPEND_NEWLINE)
        for index in range(start, stop)
    )


def feed_file(cache_dir: Path, count: int, variant: int = 0, first: int = 0) -> Path:
    """The NDJSON feed of ``count`` demo products (``variant`` as the upstream's ``--variant``), from
    product index ``first`` on (feeds with other ``first`` hold other products: other ids and SKUs)."""
    name = f"products-{count}-v{variant}" + (f"-from{first}" if first else "")
    path = cache_dir / f"{name}.ndjson"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out, ProcessPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        starts = range(first, first + count, _BLOCK)
        stops = [min(first + count, s + _BLOCK) for s in starts]
        blocks = pool.map(_lines, starts, stops, [variant] * len(starts))
        for block in blocks:
            out.write(block)
    partial.rename(path)
    return path
