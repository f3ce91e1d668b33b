"""The process's life: components start in order and stop in reverse, a start that fails
stops what already started, and a stop that hangs is abandoned at the shutdown limit."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from app.process.lifecycle import Lifecycle, Phase, StartupAborted


class Recorder:
    """A component that records its calls; it may fail to start or hang when stopped."""

    def __init__(
        self, name: str, calls: list[str], *, fail: bool = False, hang: bool = False
    ) -> None:
        self.name = name
        self._calls = calls
        self._fail = fail
        self._hang = hang

    async def start(self) -> None:
        self._calls.append(f"start {self.name}")
        if self._fail:
            raise StartupAborted(self.name)

    async def stop(self) -> None:
        self._calls.append(f"stop {self.name}")
        if self._hang:
            await asyncio.Event().wait()


def test_components_start_in_order_and_stop_in_reverse() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle([Recorder("a", calls), Recorder("b", calls)])

    async def run() -> None:
        async with lifecycle.lifespan():
            assert lifecycle.phase is Phase.READY
            calls.append("serve")

    asyncio.run(run())
    assert calls == ["start a", "start b", "serve", "stop b", "stop a"]
    assert lifecycle.phase is Phase.DRAINING


def test_a_failed_start_stops_what_had_started() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle([Recorder("a", calls), Recorder("b", calls, fail=True)])

    async def run() -> None:
        async with lifecycle.lifespan():
            calls.append("serve")

    with pytest.raises(StartupAborted):
        asyncio.run(run())
    assert calls == ["start a", "start b", "stop a"]
    assert lifecycle.phase is Phase.STARTING


def test_a_hanging_stop_is_abandoned_at_the_limit_and_the_rest_still_stop() -> None:
    calls: list[str] = []
    components = [Recorder("first", calls), Recorder("database", calls, hang=True)]
    lifecycle = Lifecycle(components, shutdown_timeout_s=0.2)

    async def run() -> None:
        async with lifecycle.lifespan():
            pass

    with capture_logs() as logs:
        asyncio.run(asyncio.wait_for(run(), timeout=5))  # the 5 s bound fails a hung stop
    assert calls == ["start first", "start database", "stop database", "stop first"]
    events = [event["event"] for event in logs]
    assert "database not closed within the shutdown limit; abandoning" in events
    assert events[-1] == "stopped"
