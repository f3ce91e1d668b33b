"""`Deadlines`: waits past their deadline are cancelled by the one housekeeping task, others
are left alone, and a cancellation from elsewhere stays one."""

from __future__ import annotations

import asyncio

from app.process.deadline_sweeper import Deadlines


class _Late(Exception):
    """What the waiter raises when its deadline ended the wait."""


async def _wait_forever_under(deadlines: Deadlines, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    wait = deadlines.begin(loop.time() + timeout_s)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if deadlines.ended(wait):
            raise _Late from None
        raise
    finally:
        deadlines.finish(wait)


def test_a_wait_past_its_deadline_ends_within_one_resolution() -> None:
    deadlines = Deadlines(resolution_s=0.05)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await _wait_forever_under(deadlines, 0.2)
        except _Late:
            return loop.time() - started
        raise AssertionError("the wait was not ended")

    elapsed = asyncio.run(main())
    assert 0.2 <= elapsed < 0.2 + 0.05 + 0.2  # the resolution, and scheduling slack


def test_waits_in_time_are_left_alone_and_the_sweeper_stops_when_idle() -> None:
    deadlines = Deadlines(resolution_s=0.02)

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        for _ in range(3):
            wait = deadlines.begin(loop.time() + 0.05)
            try:
                await asyncio.sleep(0)  # done long before the deadline
            finally:
                deadlines.finish(wait)
        await asyncio.sleep(0.15)  # past every deadline: none of them may fire now
        sweeper = deadlines._sweeper
        return sweeper is not None and sweeper.done()

    assert asyncio.run(main())


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(resolution_s=0.02)

    async def main() -> str:
        waiter = asyncio.create_task(_wait_forever_under(deadlines, 10))
        await asyncio.sleep(0)  # one step: the waiter starts and waits
        assert deadlines._waits
        waiter.cancel()
        try:
            await waiter
        except asyncio.CancelledError:
            return "cancelled"
        except _Late:
            return "late"
        return "returned"

    assert asyncio.run(main()) == "cancelled"


def test_the_same_deadlines_serve_one_event_loop_after_another() -> None:
    """An application object outlives event loops in tests; its sweeper follows the loop."""
    deadlines = Deadlines(resolution_s=0.02)

    async def main() -> bool:
        try:
            await _wait_forever_under(deadlines, 0.05)
        except _Late:
            return True
        return False

    assert asyncio.run(main())
    assert asyncio.run(main())
