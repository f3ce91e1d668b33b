"""Keeps the pool and replica gauges current.

Pool and replica gauges are written here, at every scrape and once a second, so each
worker's numbers stay current (in multiprocess mode a scrape is answered by one worker from
what every worker last wrote, at most a second old).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from app.db import metrics
from app.db.database import Database

log = structlog.get_logger("app.ops.gauges")


def publish(database: Database) -> None:
    """Write the current pool and replica state into the gauges."""
    for pool in database.pools:
        pool.publish_metrics()
    for state in database.replicas.states:
        metrics.REPLICA_HEALTHY.labels(state.name).set(1 if state.healthy else 0)
        metrics.REPLICA_LAG.labels(state.name).set(state.lag_seconds)
        metrics.REPLICA_LAG_BYTES.labels(state.name).set(state.lag_bytes)


class GaugePublisher:
    """Background task calling `publish` every `interval_s`."""

    def __init__(self, database: Database, interval_s: float) -> None:
        self._database = database
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            publish(self._database)
            self._task = asyncio.create_task(self._run(), name="gauge-publisher")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        publish(self._database)  # the disposed pools' zero counts

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                publish(self._database)
            except Exception:  # a broken gauge must not end the refresh for good
                log.exception("publishing gauges failed")
