"""An aiohttp client load generator (used when ``wrk`` is not installed): N connections for D seconds.

Prints one JSON object: requests, seconds, errors, p50_ms, p99_ms. Loopback only. The Authorization
header comes from the BENCH_AUTHORIZATION environment variable, so no token shows in a process list.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence

import aiohttp
import orjson
from yarl import URL

from bench.percentiles import percentile


async def _client(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], until: float, latencies: list[float]
) -> int:
    errors = 0
    while time.monotonic() < until:
        started = time.perf_counter()
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                errors += 1
        latencies.append(time.perf_counter() - started)
    return errors


async def run(url: str, connections: int, seconds: float, headers: dict[str, str]) -> dict[str, float]:
    host = URL(url).host
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("loopback targets only")
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        errors = await asyncio.gather(
            *(_client(session, url, headers, started + seconds, latencies) for _ in range(connections))
        )
        elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "errors": sum(errors),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    auth = os.environ.get("BENCH_AUTHORIZATION")
    headers = {"Authorization": auth} if auth else {}
    result = asyncio.run(run(args.url, args.connections, args.seconds, headers))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
