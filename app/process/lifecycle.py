"""The process's life: its phase (starting, ready, draining) and its start and stop sequence.

The sequence is generic: the composition root (`app.main`) registers the components (the data
layer, readiness, the metrics files) and this module starts them in order, reports ready,
and stops them in reverse order. Nothing here imports a layer above it, so the operator
endpoints only read the phase and the in-flight count.

Start: each component's `start` in order (the data layer warms its pools and starts its
background loops), the drain signal handlers, then `READY`. Stop: readiness fails the moment
SIGTERM arrives (`app.process.signals`), granian lets in-flight requests finish, then the
lifespan stops the components in reverse order within `SHUTDOWN_TIMEOUT_S` in all; a
component still stopping at the limit is abandoned and the next one is stopped. Each step is
logged with its timing.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import structlog

from app.process.signals import install_drain_handlers

log = structlog.get_logger("app.lifecycle")


class Phase(enum.Enum):
    """Where the process is in its life; readiness passes only in `READY`."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class StartupAborted(RuntimeError):
    """A component cannot start (the primary is unreachable); it already logged one line.

    `app.logging` drops granian's traceback of it by this name (`QUIET_STARTUP_ERROR`).
    """


class Component(Protocol):
    """Something with a start and a stop that the process's life drives."""

    @property
    def name(self) -> str:
        """Names the component in the start and stop log lines."""
        ...

    async def start(self) -> None:
        """Get ready to serve; raise `StartupAborted` (after logging why) to stop the start."""
        ...

    async def stop(self) -> None:
        """Release what `start` took; may be cut short at the shutdown limit."""
        ...


class Lifecycle:
    """Shared by the lifespan, the signal handlers and the probes."""

    def __init__(
        self,
        components: Sequence[Component] = (),
        shutdown_timeout_s: float = 10.0,
        drain_delay_s: float = 0.0,
    ):
        self.phase = Phase.STARTING
        self.started_at = time.monotonic()
        self.draining_since: float | None = None
        self.in_flight = 0  # HTTP requests being served (written by the HTTP middleware)
        self._components = tuple(components)
        self._shutdown_timeout_s = shutdown_timeout_s
        self._drain_delay_s = drain_delay_s

    @property
    def uptime_s(self) -> float:
        """Seconds since the process began starting."""
        return round(time.monotonic() - self.started_at, 3)

    def begin_draining(self, why: str) -> bool:
        """Readiness fails from now on; True if this call started the draining.

        Safe in a signal handler: it only sets attributes.
        """
        if self.phase is Phase.DRAINING:
            return False
        self.phase = Phase.DRAINING
        self.draining_since = time.monotonic()
        return True

    def draining_ms(self) -> float:
        """Milliseconds since draining began (0 if it has not)."""
        if self.draining_since is None:
            return 0.0
        return round((time.monotonic() - self.draining_since) * 1000, 1)

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """The ASGI lifespan: start the components, serve, then drain and stop them."""
        started = time.monotonic()
        running: list[Component] = []
        try:
            for component in self._components:
                await component.start()
                running.append(component)
        except BaseException:
            await self._stop(running)
            raise
        restore_signals = install_drain_handlers(
            self._on_signal, self._announce, sigterm_delay_s=self._drain_delay_s
        )
        self.phase = Phase.READY
        log.info("ready", warm_up_ms=_ms_since(started))
        try:
            yield
        finally:
            if self.begin_draining("lifespan shutdown"):
                log.info("draining: readiness now fails", why="lifespan shutdown")
            log.info("in-flight requests finished", drain_ms=self.draining_ms())
            stopping = time.monotonic()
            restore_signals()
            await self._stop(running)
            log.info("stopped", dispose_ms=_ms_since(stopping), shutdown_ms=self.draining_ms())

    async def _stop(self, components: Sequence[Component]) -> None:
        """Stop `components` in reverse order, all within the shutdown limit; whatever is
        left at the limit is abandoned (the process is exiting: the kernel closes sockets)."""
        deadline = time.monotonic() + self._shutdown_timeout_s
        for component in reversed(components):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(remaining):
                    await component.stop()
            except TimeoutError:
                log.warning(
                    f"{component.name} not closed within the shutdown limit; abandoning",
                    limit_s=self._shutdown_timeout_s,
                )
            except Exception as error:  # one failing stop must not skip the others
                log.error("stopping failed", component=component.name, error=type(error).__name__)

    def _on_signal(self, name: str) -> None:
        self.begin_draining(name)

    def _announce(self, name: str) -> None:
        delay = self._drain_delay_s if name == "SIGTERM" else 0.0
        log.info(
            "shutdown signal received; readiness now fails",
            signal=name,
            in_flight=self.in_flight,
            drain_delay_s=delay,
        )


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
