"""The background-loop runner: a fixed cadence (no drift), missed ticks skipped, a failing
step logged and the loop kept alive."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from app.process.periodic import Periodic, next_due


def test_next_due_keeps_the_cadence() -> None:
    assert next_due(10.0, 10.03, 1.0) == 11.0  # a step that took 30 ms does not shift it


def test_next_due_skips_missed_ticks() -> None:
    assert next_due(10.0, 13.5, 1.0) == 14.0  # a 3.5 s step: ticks 11, 12 and 13 are skipped


def test_a_step_that_takes_time_does_not_push_the_next_one() -> None:
    interval, steps, delay = 0.05, 8, 0.02

    async def run() -> list[float]:
        loop = asyncio.get_running_loop()
        starts: list[float] = []
        done = asyncio.Event()

        async def step() -> None:
            starts.append(loop.time())
            if len(starts) == steps:
                done.set()
            await asyncio.sleep(delay)  # the step's own time must not add up

        periodic = Periodic("test", interval, step)
        periodic.start()
        try:
            await asyncio.wait_for(done.wait(), timeout=5)
        finally:
            await periodic.stop()
        return starts

    starts = asyncio.run(run())
    span = starts[-1] - starts[0]
    # Drifting by the step's time would take (steps - 1) * (interval + delay) = 0.49 s.
    assert span < (steps - 1) * (interval + delay / 2), span


def test_a_failing_step_is_logged_and_the_loop_goes_on() -> None:
    async def run() -> int:
        calls = 0
        twice = asyncio.Event()

        async def step() -> None:
            nonlocal calls
            calls += 1
            if calls >= 2:
                twice.set()
            raise RuntimeError("boom")

        periodic = Periodic("failing", 0.01, step)
        periodic.start()
        try:
            await asyncio.wait_for(twice.wait(), timeout=5)
        finally:
            await periodic.stop()
        assert not periodic.running
        return calls

    with capture_logs() as logs:
        assert asyncio.run(run()) >= 2
    failures = [event for event in logs if event["event"] == "periodic step failed"]
    assert failures
    assert failures[0]["task"] == "failing"


def test_the_interval_must_be_positive() -> None:
    async def step() -> None:
        return None

    with pytest.raises(ValueError, match="positive"):
        Periodic("bad", 0, step)
