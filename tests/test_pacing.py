"""The sync's slices give way to requests: one yield on a quiet loop, a longer wait on a busy one."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.transport import pacing


class _Sleeps:
    """Records the delays give_way asks asyncio.sleep for, and really sleeps them."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._sleep = asyncio.sleep

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self._sleep(delay)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> _Sleeps:
    recorder = _Sleeps()
    monkeypatch.setattr(asyncio, "sleep", recorder)
    return recorder


def _block_the_loop_for(seconds: float) -> None:
    # A request handler (or anything) holding the loop: the round give_way yields to takes this long.
    asyncio.get_running_loop().call_soon(time.sleep, seconds)


async def test_after_a_busy_round_the_sync_waits_about_as_long_again(sleeps: _Sleeps) -> None:
    _block_the_loop_for(0.004)
    await pacing.give_way()
    assert sleeps.delays[0] == 0
    assert len(sleeps.delays) == 2 and 0.004 <= sleeps.delays[1] <= pacing.MAX_WAIT_S


async def test_the_extra_wait_is_bounded_so_the_sync_always_progresses(sleeps: _Sleeps) -> None:
    _block_the_loop_for(0.05)
    await pacing.give_way()
    assert sleeps.delays == [0, pacing.MAX_WAIT_S]


async def test_on_a_quiet_loop_it_only_yields(sleeps: _Sleeps) -> None:
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "other work")
    await pacing.give_way()
    assert ran == ["other work"]  # everything ready ran before the sync went on
    assert sleeps.delays[0] == 0 and all(delay <= pacing.MAX_WAIT_S for delay in sleeps.delays)
