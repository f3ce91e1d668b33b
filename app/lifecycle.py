"""The service's phase (starting, ready, draining) and its start and stop sequence."""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from litestar import Litestar

from app.config import Settings
from app.db.database import Database

log = structlog.get_logger("app.lifecycle")


class Phase(enum.Enum):
    """Where the process is in its life; readiness passes only in `READY`."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class Lifecycle:
    """Shared by the lifespan and the readiness endpoint."""

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.started_at = time.monotonic()

    @property
    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_at, 3)

    def begin_draining(self, why: str) -> None:
        """Readiness fails from now on."""
        if self.phase is not Phase.DRAINING:
            self.phase = Phase.DRAINING
            log.info("draining: readiness now fails", why=why)


def make_lifespan(
    settings: Settings, lifecycle: Lifecycle
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The app's lifespan: warm up the pools, serve, then drain and dispose."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        database = Database(settings)
        app.state.database = database
        started = time.monotonic()
        try:
            await database.warm_up()
        except Exception as error:
            log.error("the primary is unreachable; not starting", error=type(error).__name__)
            await database.dispose(settings.shutdown_timeout_s)
            raise
        lifecycle.phase = Phase.READY
        log.info("ready", warm_up_ms=round((time.monotonic() - started) * 1000, 1))
        try:
            yield
        finally:
            lifecycle.begin_draining("shutdown")
            await database.dispose(settings.shutdown_timeout_s)
            log.info("stopped")

    return lifespan
