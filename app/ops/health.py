"""`/health` (liveness), `/health/ready` (readiness) and `/health/metrics` (JSON snapshot)."""

from __future__ import annotations

import os
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery

from app.api.auth import NO_TOKEN
from app.api.problems import problem_responses
from app.ops.metrics_guard import is_operator, operator_only
from app.ops.readiness import Readiness
from app.ops.snapshot import metrics_snapshot
from app.process.lifecycle import Lifecycle, Phase

HEALTH_JSON = "application/health+json"
_NO_STORE = {"Cache-Control": "no-store"}


class Liveness(msgspec.Struct):
    """Liveness: the process serves HTTP."""

    status: str
    uptime: float


class HealthController(Controller):
    """Probes; liveness never needs a database, and stays `pass` while the service drains."""

    path = "/health"
    tags = ["operations"]
    security = NO_TOKEN  # no access token; /health/metrics has the operator's guard

    @get("/", summary="Liveness: no database call", cache=False)
    async def live(self, state: State) -> Liveness:
        lifecycle: Lifecycle = state.lifecycle
        return Liveness(status="pass", uptime=lifecycle.uptime_s)

    @get(
        "/ready",
        summary="Readiness: writer, replicas and Redis, checked concurrently",
        description="Anonymous callers get the status only when `METRICS_TOKEN` is set; the "
        "checks (servers' addresses, lag) and `verbose=true` (pid, uptime) need the token.",
        media_type=HEALTH_JSON,
        responses={
            **problem_responses(authenticated=False),
            503: ResponseSpec(
                data_container=None,
                description="Not ready: starting, draining, or the writer or Redis failed",
                media_type=HEALTH_JSON,
            ),
        },
    )
    async def ready(
        self, request: Request[Any, Any, Any], state: State, verbose: FromQuery[bool] = False
    ) -> Response[dict[str, Any]]:
        lifecycle: Lifecycle = state.lifecycle
        operator = is_operator(request)
        verbose = verbose and operator
        readiness: Readiness | None = getattr(state, "readiness", None)
        body: dict[str, Any]
        if lifecycle.phase is not Phase.READY or readiness is None:
            status = "fail"
            body = {"status": status, "output": lifecycle.phase.value, "checks": {}}
        else:
            report = await readiness.check()
            # Draining may have begun while the checks ran.
            status = report.status if lifecycle.phase is Phase.READY else "fail"
            body = {**report.as_json(verbose=verbose), "status": status}
        if verbose:
            body.update(phase=lifecycle.phase.value, uptime=lifecycle.uptime_s, pid=os.getpid())
        if not operator:  # the servers, their addresses and lag are the operator's to see
            body = {"status": status}
        return Response(
            body,
            status_code=503 if status == "fail" else 200,
            media_type=HEALTH_JSON,
            headers=_NO_STORE,
        )

    @get(
        "/metrics",
        summary="Pool, replica, memory and process numbers of this worker",
        guards=[operator_only],
    )
    async def metrics(self, state: State) -> Response[dict[str, Any]]:
        lifecycle: Lifecycle = state.lifecycle
        body = metrics_snapshot(
            getattr(state, "database", None),
            phase=lifecycle.phase.value,
            uptime_s=lifecycle.uptime_s,
        )
        return Response(body, headers=_NO_STORE)
