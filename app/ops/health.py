"""`/health` (liveness) and `/health/ready` (readiness) for orchestrators."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.params import FromQuery

from app.lifecycle import Lifecycle
from app.ops.readiness import check_readiness

HEALTH_JSON = "application/health+json"


class Liveness(msgspec.Struct):
    """Liveness: the process serves HTTP."""

    status: str
    uptime: float


class HealthController(Controller):
    """Probes; they never need a database to answer liveness."""

    path = "/health"
    tags = ["operations"]
    include_in_schema = True

    @get("/", summary="Liveness: no database call", cache=False)
    async def live(self, state: State) -> Liveness:
        lifecycle: Lifecycle = state.lifecycle
        return Liveness(status="pass", uptime=lifecycle.uptime_s)

    @get("/ready", summary="Readiness: writer, replicas and Redis, checked concurrently")
    async def ready(
        self, state: State, verbose: FromQuery[bool] = False
    ) -> Response[dict[str, Any]]:
        report = await check_readiness(state, verbose=verbose)
        return Response(
            report.body,
            status_code=200 if report.status != "fail" else 503,
            media_type=HEALTH_JSON,
            headers={"Cache-Control": "no-store"},
        )
