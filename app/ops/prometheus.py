"""`GET /metrics`: Prometheus exposition of the data layer and of HTTP request durations.

With several granian workers a scrape reaches one of them, so the numbers must not be that
worker's alone: prometheus_client's multiprocess mode is used whenever
`PROMETHEUS_MULTIPROC_DIR` is set. Every worker writes its samples to files there and the
worker that answers a scrape sums them (gauges declare how: see `app.db.metrics`). The
directory must be empty when the workers start: `multiprocess_dir` prepares it in the parent
process (`python -m app serve`), creating a temporary one when `WORKERS` > 1 and none is set.
"""

from __future__ import annotations

import os

import structlog
from litestar import Controller, MediaType, Request, Response, get
from litestar.datastructures import State
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder

from app.api.auth import NO_TOKEN
from app.db.cluster import Database
from app.ops.metrics_guard import operator_only
from app.process.multiproc import MULTIPROC_ENV, multiprocess_enabled

log = structlog.get_logger("app.ops.prometheus")


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The scrape body and its content type, for what the scraper accepts."""
    registry: CollectorRegistry = REGISTRY
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class MetricsFiles:
    """The worker's share of the multiprocess metrics directory, as a lifecycle component."""

    name = "metrics"

    def __init__(self, workers: int) -> None:
        self._workers = workers

    async def start(self) -> None:
        """Warn when several workers would each answer scrapes with their own numbers."""
        if self._workers > 1 and not multiprocess_enabled():
            log.warning(
                "several workers but no shared metrics directory: /metrics describes only the"
                " worker that answers",
                workers=self._workers,
                set=MULTIPROC_ENV,
            )

    async def stop(self) -> None:
        """Remove this worker's live gauges from the directory (its counters stay summed)."""
        if multiprocess_enabled():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class MetricsController(Controller):
    """Prometheus scrape endpoint."""

    path = "/metrics"
    tags = ["operations"]
    security = NO_TOKEN  # no access token: the operator's guard (METRICS_TOKEN, when set)
    guards = [operator_only]

    @get(
        "/",
        summary="Prometheus metrics (text exposition; OpenMetrics when accepted)",
        cache=False,
        media_type=MediaType.TEXT,
    )
    async def scrape(
        self, request: Request[object, object, State], state: State
    ) -> Response[bytes]:
        database: Database | None = getattr(state, "database", None)
        if database is not None:
            database.publish_metrics()
        body, content_type = exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})
