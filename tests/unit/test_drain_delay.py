"""`DRAIN_DELAY_S`: SIGTERM fails readiness at once and stops granian only after the delay."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from app.cli import _kill_timeout_s
from app.config import Settings
from app.process.signals import install_drain_handlers


def test_sigterm_with_a_delay_stops_through_granians_sigint_callback_later() -> None:
    calls: list[tuple[str, float]] = []
    started = time.monotonic()

    def note(what: str) -> None:
        calls.append((what, time.monotonic() - started))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def granian_like(name: str) -> None:  # granian's worker: sets its stop event
            note(f"granian:{name}")
            stopped.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, granian_like, signum.name)
        restore = install_drain_handlers(
            lambda name: note(f"drain:{name}"),
            lambda name: note(f"announce:{name}"),
            sigterm_delay_s=0.3,
        )
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # a second one changes nothing
        await asyncio.wait_for(stopped.wait(), 5)
        await asyncio.sleep(0.05)
        restore()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

    asyncio.run(main())
    names = [name for name, _ in calls]
    assert names == ["drain:SIGTERM", "announce:SIGTERM", "granian:SIGINT"], calls
    assert calls[0][1] < 0.2  # readiness fails at once
    assert 0.3 <= calls[2][1] < 1.5  # the server stops after the delay


def test_kill_timeout_leaves_room_for_the_drain_delay() -> None:
    base = _kill_timeout_s(Settings.from_env({}))
    # 5 s body + 2 s pool wait + 5 s statement + 10 s shutdown + 1 s
    assert base == 23
    assert _kill_timeout_s(Settings.from_env({"DRAIN_DELAY_S": "2.5"})) == 26
    assert Settings.from_env({}).server.drain_delay_s == 0.0
