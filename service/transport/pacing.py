"""How the sync's work on the event loop gives way to requests.

The sync does its Python work on the event loop in slices (a few hundred rows at a time) and yields
between them. Yielding once is enough when the loop is quiet; under a flood of status polls it is not:
each yield lets one round of polls through, then the next slice runs, so the sync keeps a fixed share
of every round and the polls' latency grows with it. The sync is background work and the answers are
what someone waits for, so when the loop is busy the sync waits a little longer.
"""

from __future__ import annotations

import asyncio

# One round of the loop taking this long means requests were queueing (a status poll takes a fraction
# of a millisecond, and the sync's own slices less than one).
BUSY_ROUND_S = 0.002
# The longest the sync waits on top of that round: it always makes progress, however busy the loop.
MAX_WAIT_S = 0.010


async def give_way() -> None:
    """Let everything else that is ready run; if that took a busy round, wait about as long again."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.sleep(0)
    round_s = loop.time() - started
    if round_s > BUSY_ROUND_S:
        await asyncio.sleep(min(round_s, MAX_WAIT_S))
