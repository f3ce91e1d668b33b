"""HTTP server metrics by route template, and the in-flight count the shutdown log reports.

Litestar's `PrometheusMiddleware` builds a `Request` and four label dictionaries per request;
on the saturating benchmarks that was ~100 us of a ~900 us request. This middleware records
the same series (`http_server_requests_total`, `http_server_request_duration_seconds`,
`http_server_requests_error_total`, `http_server_requests_in_progress`, labelled by
`app_name`, `method`, `path` template and `status_code`) straight from the ASGI scope, with
the labelled children cached.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

from app.process.lifecycle import Lifecycle

APP_NAME = "messenger"
_LABELS = ("app_name", "method", "path", "status_code")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("http_server_requests", "Total requests", _LABELS)
ERRORS = Counter("http_server_requests_error", "Total errors in requests (5xx)", _LABELS)
DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Request duration, in seconds, until the response body is sent",
    _LABELS,
    buckets=_BUCKETS,
)
IN_PROGRESS = Gauge(
    "http_server_requests_in_progress",
    "Requests being served",
    ("app_name", "method", "path"),
    multiprocess_mode="livesum",
)


class HttpMetricsMiddleware:
    """ASGI middleware (inside the router, so `path_template` is known)."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._gauges: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        # The key is Litestar's (app.compat.litestar.PATH_TEMPLATE), kept literal here.
        path: str = scope.get("path_template") or scope["path"]
        gauge = self._gauges.get((method, path))
        if gauge is None:
            gauge = self._gauges[(method, path)] = IN_PROGRESS.labels(APP_NAME, method, path)
        started = time.perf_counter()
        span = [200, 0.0]  # status, seconds until the last body chunk

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                span[0] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                span[1] = time.perf_counter() - started
            await send(message)

        self.lifecycle.in_flight += 1
        gauge.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            gauge.dec()
            self.lifecycle.in_flight -= 1
            self._record(method, path, int(span[0]), span[1] or time.perf_counter() - started)

    def _record(self, method: str, path: str, status: int, seconds: float) -> None:
        key = (method, path, status)
        children = self._children.get(key)
        if children is None:
            labels = (APP_NAME, method, path, str(status))
            errors = ERRORS.labels(*labels) if status >= 500 else None
            children = (REQUESTS.labels(*labels), DURATION.labels(*labels), errors)
            self._children[key] = children
        requests, duration, errors = children
        requests.inc()
        duration.observe(seconds)
        if errors is not None:
            errors.inc()
