"""The event loop's lag: a step that starts late by a blocking call is observed that late."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from app.process.loop_lag import INTERVAL_S, LoopLag


def _count_over(bound: str) -> float:
    total = REGISTRY.get_sample_value("process_event_loop_lag_seconds_count") or 0.0
    below = REGISTRY.get_sample_value("process_event_loop_lag_seconds_bucket", {"le": bound})
    return total - (below or 0.0)


async def _block_the_loop_then_sample(lag: LoopLag) -> None:
    await lag.start()
    try:
        samples = REGISTRY.get_sample_value("process_event_loop_lag_seconds_count") or 0.0
        # The fault under test, not a wait: a blocking call, so the due sample starts late.
        time.sleep(INTERVAL_S + 0.3)  # noqa: ASYNC251
        deadline = time.monotonic() + 5
        while (REGISTRY.get_sample_value("process_event_loop_lag_seconds_count") or 0) <= samples:
            assert time.monotonic() < deadline, "no sample after the loop was free again"
            await asyncio.sleep(0.01)
    finally:
        await lag.stop()


def test_a_blocked_loop_shows_as_lag() -> None:
    over_250ms = _count_over("0.25")
    asyncio.run(_block_the_loop_then_sample(LoopLag()))
    assert _count_over("0.25") == over_250ms + 1
