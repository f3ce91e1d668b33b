"""Keeps the pool and replica gauges current.

Pool and replica gauges are written here, at every scrape and once a second, so each
worker's numbers stay current (in multiprocess mode a scrape is answered by one worker from
what every worker last wrote, at most a second old).
"""

from __future__ import annotations

from app.db import metrics
from app.db.database import Database
from app.periodic import Periodic


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
        self._periodic = Periodic("gauge-publisher", interval_s, self._publish)

    def start(self) -> None:
        if not self._periodic.running:
            publish(self._database)
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        publish(self._database)  # the disposed pools' zero counts

    async def _publish(self) -> None:
        publish(self._database)
