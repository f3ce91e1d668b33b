"""Traces (the `otel` extra), with the SDK's in-memory exporter: one trace per request, its
HTTP span and the SQL spans on the server that ran them, tagged with the pool; no parameter
values; nothing traced for the probes or the background loops; trace ids on log lines; off
unless configured."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import redirect_stderr
from urllib.parse import urlsplit

import pytest
import structlog
from litestar import Litestar
from litestar.plugins.opentelemetry import OpenTelemetryPlugin
from litestar.testing import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.config import Settings, TracingSettings
from app.logging import configure_logging
from app.main import create_app
from app.ops.tracing import POOL_ATTRIBUTE, Tracing, uninstall
from tests.support.api import register
from tests.support.cluster import TestDatabase

# Any exporter name turns tracing on; the provider set below (in-memory) is the one used.
TRACED = {"OTEL_TRACES_EXPORTER": "console"}


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    uninstall()
    exporter.shutdown()


@pytest.fixture(scope="module")
def traced(database: TestDatabase, spans: InMemorySpanExporter) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(Settings.from_env(database.env(**TRACED)))) as client:
        yield client


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _one_trace(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The request's server span and its SQL spans; every span of one trace."""
    finished = exporter.get_finished_spans()
    assert len({span.context.trace_id for span in finished}) == 1, finished
    (server,) = [span for span in finished if span.kind is SpanKind.SERVER]
    sql = [span for span in finished if span.kind is SpanKind.CLIENT]
    for span in sql:
        assert span.parent is not None
        assert span.parent.span_id == server.context.span_id
    return server, sql


def test_a_write_is_one_trace_with_its_sql_on_the_primary(
    traced: TestClient[Litestar], spans: InMemorySpanExporter, database: TestDatabase
) -> None:
    spans.clear()
    password = "traced-pass-" + str(time.time_ns())
    response = traced.post(
        "/users", json={"username": f"traced_{time.time_ns() % 10**9}", "password": password}
    )
    assert response.status_code == 201, response.text
    server, sql = _one_trace(spans)
    assert server.name == "POST /users"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/users"
    assert server.attributes["http.status_code"] == 201
    insert = [span for span in sql if span.name == "INSERT"]
    assert insert, [span.name for span in sql]
    for span in sql:
        attributes = dict(span.attributes or {})
        assert attributes["db.system"] == "postgresql"
        assert attributes[POOL_ATTRIBUTE] == "primary"
        assert attributes["net.peer.port"] == _port(database.primary_url)
        assert "db.statement.parameters" not in attributes
    statement = str(dict(insert[0].attributes or {})["db.statement"])
    assert "$1" in statement
    for span in sql:  # no parameter values anywhere
        values = str(dict(span.attributes or {}))
        assert response.json()["username"] not in values
        assert password not in values


def test_a_read_is_one_trace_with_its_sql_on_a_replica(
    traced: TestClient[Litestar], spans: InMemorySpanExporter, database: TestDatabase
) -> None:
    user = register(traced)
    database.wait_replicas()
    spans.clear()
    response = traced.get(f"/users/{user.id}", headers=user.headers)
    assert response.status_code == 200
    server, sql = _one_trace(spans)
    assert server.name == "GET /users/{user_id}"
    assert len(sql) == 1
    attributes = dict(sql[0].attributes or {})
    replicas = {f"replica-{i}": _port(url) for i, url in enumerate(database.replica_urls)}
    assert attributes[POOL_ATTRIBUTE] in replicas
    assert attributes["net.peer.port"] == replicas[str(attributes[POOL_ATTRIBUTE])]
    assert str(attributes["db.statement"]).startswith("SELECT")


def test_each_request_is_its_own_trace_and_probes_and_background_make_none(
    traced: TestClient[Litestar], spans: InMemorySpanExporter
) -> None:
    user = register(traced)
    spans.clear()
    for _ in range(2):
        assert traced.get("/users?limit=1", headers=user.headers).status_code == 200
    assert len({span.context.trace_id for span in spans.get_finished_spans()}) == 2
    spans.clear()
    assert traced.get("/health/ready").status_code == 200
    assert traced.get("/metrics").status_code in (200, 401)
    time.sleep(1.5)  # a round of the cluster monitor and the gauge publisher
    assert [(s.name, s.parent, dict(s.attributes or {})) for s in spans.get_finished_spans()] == []


def test_log_lines_inside_a_span_carry_its_ids(database: TestDatabase) -> None:
    configure_logging(Settings.from_env(database.env(**TRACED)))
    tracer = trace.get_tracer("test")
    stream = io.StringIO()
    with redirect_stderr(stream):
        # The console renderer writes to the stderr of its configuration: configure again.
        configure_logging(Settings.from_env(database.env(**TRACED)))
        with tracer.start_as_current_span("work") as span:
            structlog.get_logger("test").info("inside a span")
        structlog.get_logger("test").info("outside")
    context = span.get_span_context()
    inside, outside = [line for line in stream.getvalue().splitlines() if "side" in line]
    assert f"trace_id={context.trace_id:032x}" in inside
    assert f"span_id={context.span_id:016x}" in inside
    assert "trace_id" not in outside
    configure_logging(Settings.from_env(database.env()))


def test_tracing_is_off_unless_configured(database: TestDatabase) -> None:
    settings = Settings.from_env(database.env())
    assert settings.tracing == TracingSettings(exporter="none")
    app = create_app(settings)
    assert not any(isinstance(plugin, OpenTelemetryPlugin) for plugin in app.plugins)
    assert Tracing(settings.tracing).plugins() == []
    assert Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).tracing == (
        TracingSettings(exporter="otlp")
    )
