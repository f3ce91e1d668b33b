"""OpenTelemetry traces: one trace per request, its HTTP span and a span per SQL statement.

Off unless OpenTelemetry's own variables ask for it (`TracingSettings`), and then only with
the `otel` extra installed (`pip install 'messenger-data-service[otel]'`); without it the
service logs one warning and runs untraced. What is traced:

- the request: Litestar's OpenTelemetry plugin (the ASGI instrumentation), the span named
  by route template (`GET /users/{user_id}`, with `http.route`), its `receive`/`send`
  sub-spans left out; the probes, the scrape and the OpenAPI pages are not traced;
- each statement: the asyncpg instrumentation (`db.system`, `db.name`, `db.statement` with
  `$1` placeholders and never the values, `net.peer.name`/`net.peer.port` of the server that
  ran it), plus `db.client.connection.pool.name`, the logical pool (`primary`,
  `replica-0`: the name of OpenTelemetry's pool metrics attribute, and of our `pool_name`
  label), read from the connection's `application_name` (`messenger-<pool>`, set by
  `app.db.engine`). Statements outside a request (the cluster monitor's probes, readiness,
  warm-up) make no span, so background work never makes traces of its own.

The tracer provider is the process's global one: a provider already set (by a test, or by an
agent such as `opentelemetry-instrument`) is used as it is; otherwise one is made with the
exporter `OTEL_TRACES_EXPORTER` names and a batch processor (the SDK reads the endpoint,
headers, sampler and resource variables). Each granian worker makes its own; `stop` flushes
what is buffered.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib.util
from typing import Any

import structlog
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol
from litestar.types import ASGIApp, Receive, Scope, Send

from app.compat.opentelemetry_asyncpg import request_statements
from app.config import TracingSettings
from app.db.engine import pool_of_application

log = structlog.get_logger("app.ops.tracing")

POOL_ATTRIBUTE = "db.client.connection.pool.name"
_UNTRACED = ["^/health", "^/metrics", "^/schema"]
_FLUSH_TIMEOUT_MS = 5000
_pool: contextvars.ContextVar[str | None] = contextvars.ContextVar("traced_pool", default=None)
_tagged_providers: set[int] = set()


def tracing_available() -> bool:
    """Whether the `otel` extra is installed."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in (
            "opentelemetry.sdk",
            "opentelemetry.instrumentation.asgi",
            "opentelemetry.instrumentation.asyncpg",
        )
    )


class Tracing:
    """The process's tracing, as a lifecycle component (started first, stopped last)."""

    name = "tracing"

    def __init__(self, settings: TracingSettings) -> None:
        self._provider: Any = None
        self.enabled = settings.enabled and _install(settings)
        if self.enabled:
            from opentelemetry import trace

            self._provider = trace.get_tracer_provider()

    def plugins(self) -> list[InitPluginProtocol]:
        """Litestar's OpenTelemetry plugin when tracing is on, else nothing."""
        if not self.enabled:
            return []
        from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

        return [
            OpenTelemetryPlugin(
                OpenTelemetryConfig(
                    scope_span_details_extractor=_span_details,
                    exclude=_UNTRACED,
                    exclude_spans=["receive", "send"],
                )
            ),
            _RouteNames(),
        ]

    async def start(self) -> None:
        """Nothing to open: the exporter connects when it first sends."""

    async def stop(self) -> None:
        """Send the spans still buffered (bounded), off the event loop."""
        flush = getattr(self._provider, "force_flush", None)
        if flush is not None:
            await asyncio.to_thread(flush, _FLUSH_TIMEOUT_MS)


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """The span's first name: the method only. The OpenTelemetry middleware runs before the
    router, so the route is not known yet; `_RouteNames` renames the span once it is."""
    return str(scope.get("method", "HTTP")), {}


class _RouteNames(InitPluginProtocol):
    """Names each request's span after its route template (`GET /users/{user_id}`), never
    the path: bounded cardinality, and no identifiers in span names."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.append(_name_by_route)
        return app_config


def _name_by_route(app: ASGIApp) -> ASGIApp:
    from opentelemetry import trace

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        template = scope.get("path_template")  # app.compat.litestar.PATH_TEMPLATE
        method = scope.get("method")
        if template and method:
            span = trace.get_current_span()
            if span.is_recording():
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
        await app(scope, receive, send)

    return middleware


def _install(settings: TracingSettings) -> bool:
    """Set up the provider (unless one is set) and instrument asyncpg; False without the
    `otel` extra."""
    if not tracing_available():
        log.warning(
            "tracing asked for but OpenTelemetry is not installed (the otel extra); not tracing",
            exporter=settings.exporter,
        )
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "messenger"}))
        made = TracerProvider(resource=resource)
        if settings.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            made.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(made)
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider) and id(provider) not in _tagged_providers:
        _tagged_providers.add(id(provider))
        provider.add_span_processor(_pool_name_processor())
    _instrumentor().instrument()
    return True


def uninstall() -> None:
    """Undo the asyncpg instrumentation (for tests; a process that traces keeps it)."""
    if tracing_available():
        _instrumentor().uninstrument()


@functools.cache
def _instrumentor_class() -> Any:
    """The asyncpg instrumentor, tracing statements inside a request only, each tagged with
    its pool (made once: an instrumentor is a singleton per class)."""
    from opentelemetry import trace

    def in_requests_only(traced: Any, connection_of: Any) -> Any:
        async def wrapper(self: Any, func: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if not trace.get_current_span().get_span_context().is_valid:
                return await func(*args, **kwargs)  # background work: no trace of its own
            token = _pool.set(_pool_name(connection_of(instance)))
            try:
                return await traced(self, func, instance, args, kwargs)
            finally:
                _pool.reset(token)

        return wrapper

    return request_statements(in_requests_only)


def _instrumentor() -> Any:
    return _instrumentor_class()()


@functools.cache
def _pool_name_processor() -> Any:
    """A span processor adding the pool of the statement being traced as its span starts
    (one per process, added once to the provider)."""
    from opentelemetry.sdk.trace import SpanProcessor

    class PoolName(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            pool = _pool.get()
            if pool is not None:
                span.set_attribute(POOL_ATTRIBUTE, pool)

    return PoolName()


def _pool_name(connection: Any) -> str | None:
    try:
        name = str(connection.get_settings().application_name)
    except AttributeError:
        return None
    return pool_of_application(name)
