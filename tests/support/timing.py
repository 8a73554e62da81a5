"""Timing checks that stay honest on a loaded machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

TIMING_TOLERANCE = 0.020
"""How close a replay at --speed N must keep the recorded gaps (on a quiet machine)."""
LAG_TICK = 0.005


@asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """How late the event loop wakes up meanwhile: no replay can keep time better than that.

    On a quiet machine it stays near zero, so the timing checks hold to TIMING_TOLERANCE;
    on a loaded one (CI running suites in parallel) it keeps them from failing spuriously.
    """
    lags = [0.0]
    loop = asyncio.get_running_loop()

    async def tick() -> None:
        while True:
            due = loop.time() + LAG_TICK
            await asyncio.sleep(LAG_TICK)
            lags.append(loop.time() - due)

    ticker = asyncio.create_task(tick())
    try:
        yield lags
    finally:
        ticker.cancel()
        await asyncio.wait([ticker])
