"""Settings read from the environment once, validated, grouped, and frozen.

Every variable of the README's configuration table is parsed here and nowhere else. Units are
converted once: the documented names keep their `_MS`/`_S` suffixes outside, every duration
is in seconds inside. A bad value raises `ConfigError`, whose message names the variable and
what is wrong, never the value itself when the value may hold a secret (URLs).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from app.dsn import HostListError, Member, parse_host_list

Environment = Literal["development", "test", "production"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
LogLevel = Literal["debug", "info", "warning", "error"]

_ENVIRONMENTS: tuple[Environment, ...] = ("development", "test", "production")
_SSL_MODES: tuple[SslMode, ...] = (
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
)
_LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
_T = TypeVar("_T", bound=str)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_POSTGRES_SCHEMES = ("postgresql", "postgres")

# Pool sizes measured on a 2-core box with PostgreSQL on the same host (docs/performance.md):
# sends scale with the writer pool (concurrent commits share WAL flushes), reads do not.
DEFAULT_POOL_MIN = 4
DEFAULT_POOL_MAX = 32
DEFAULT_REPLICA_POOL_MIN = 4
DEFAULT_REPLICA_POOL_MAX = 10


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Sizing and timeouts of one connection pool (the writer's, or each replica's)."""

    min_size: int = DEFAULT_POOL_MIN
    """Connections opened at start and kept open when idle (`DB_POOL_MIN`)."""
    max_size: int = DEFAULT_POOL_MAX
    """Connections open at most (`DB_POOL_MAX`)."""
    timeout_s: float = 2.0
    """How long a request waits for a free connection before a 503 (`DB_POOL_TIMEOUT_MS`)."""
    connect_timeout_s: float = 2.0
    """How long opening one connection may take (`DB_CONNECT_TIMEOUT_MS`)."""
    statement_timeout_s: float = 5.0
    """Server-side bound on one statement; 0 for none (`DB_STATEMENT_TIMEOUT_MS`)."""
    idle_timeout_s: float = 30.0
    """Connections above the minimum idle this long are closed; 0 never (`DB_IDLE_TIMEOUT_MS`)."""
    max_lifetime_s: float = 1800.0
    """Connections are replaced after this long, minus up to 10% jitter (`DB_MAX_LIFETIME_S`)."""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Where the servers are and how to reach them."""

    url: str | None = None
    """The primary, or the cluster as a libpq host list (`DATABASE_URL`); None: dev cluster."""
    members: tuple[Member, ...] = ()
    """The servers of a host list, roles found by probing; empty for a fixed topology."""
    target_session_attrs: str = "any"
    """libpq's option from `DATABASE_URL`; the writer is always the primary."""
    replica_urls: tuple[str, ...] = ()
    """The read replicas (`DATABASE_REPLICA_URLS`, comma-separated; `DATABASE_REPLICA_URL`)."""
    sslmode: SslMode = "disable"
    """libpq's TLS modes (`DB_SSLMODE`; `verify-full` by default in production)."""
    pgbouncer: bool = False
    """The URLs point at PgBouncer in transaction pooling mode (`DB_PGBOUNCER`)."""
    wait_for_primary_s: float = 0.0
    """How long the start waits for the primary; 0 fails at once (`DB_WAIT_FOR_PRIMARY_S`)."""


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """The replica monitor, and how reads use what it learns."""

    interval_s: float = 1.0
    """Time between two probe rounds (`DB_REPLICA_CHECK_INTERVAL_MS`)."""
    max_lag_s: float = 10.0
    """A replica further behind than this leaves the rotation (`DB_REPLICA_MAX_LAG_S`)."""
    token_wait_s: float = 0.02
    """How long a read with a token waits for a replica to replay it (`DB_TOKEN_WAIT_MS`)."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The HTTP server (granian) and the process's stop."""

    host: str = "127.0.0.1"
    """Address to listen on (`HOST`)."""
    port: int = 8000
    """Port to listen on (`PORT`)."""
    workers: int = 1
    """granian worker processes (`WORKERS`)."""
    shutdown_timeout_s: float = 10.0
    """Bound on closing the pools after the last request drained (`SHUTDOWN_TIMEOUT_S`)."""
    drain_delay_s: float = 0.0
    """After SIGTERM, readiness fails at once but the worker keeps serving (listener open)
    this long before granian stops accepting: time for a load balancer's health checks to
    take it out of rotation (`DRAIN_DELAY_S`; 0 stops accepting at once)."""


PROBE_RESERVE = 16
"""Connections per worker that only the operator endpoints may use (probes, metrics)."""
_MAX_HEADER_TIMEOUT_S = 60.0  # granian's bound on --http1-header-read-timeout


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How long a worker waits for a request and how many it holds (granian's flags and the
    request deadline middleware, `app.ops.request_deadline`)."""

    header_timeout_s: float = 10.0
    """Time to receive a request's headers; also the idle keep-alive limit
    (`REQUEST_HEADER_TIMEOUT_S`, granian's `--http1-header-read-timeout`)."""
    body_timeout_s: float = 5.0
    """Time from the headers to the end of the body; then 408 (`REQUEST_BODY_TIMEOUT_S`)."""
    worker_connections: int = 1024
    """Connections a worker holds at once, idle keep-alive ones included
    (`WORKER_CONNECTIONS`, granian's `--backpressure`)."""

    @property
    def request_slots(self) -> int:
        """Requests a worker serves at once besides the operator endpoints."""
        return self.worker_connections - PROBE_RESERVE


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Accounts, tokens, login limits, and who may read the operator endpoints."""

    jwt_keys: tuple[tuple[str, bytes], ...] = ()
    """Signing keys as (key id, secret), the first signs (`AUTH_JWT_KEYS`: `kid:secret,...`)."""
    access_token_ttl_s: float = 900.0
    """How long an access token is valid (`AUTH_ACCESS_TOKEN_TTL_S`)."""
    refresh_token_ttl_s: float = 30 * 86400.0
    """How long a refresh token is valid (`AUTH_REFRESH_TOKEN_TTL_S`)."""
    login_limit_per_username: int = 10
    """Login attempts per username and window (`AUTH_LOGIN_LIMIT_PER_USERNAME`)."""
    login_limit_per_address: int = 50
    """Login attempts per client address and window (`AUTH_LOGIN_LIMIT_PER_ADDRESS`)."""
    login_window_s: float = 60.0
    """The window the login limits count in (`AUTH_LOGIN_WINDOW_S`)."""
    metrics_token: str | None = None
    """Bearer token `/metrics` and `/health/metrics` require when set (`METRICS_TOKEN`)."""
    metrics_public: bool = False
    """Allow open operator endpoints in production (`METRICS_PUBLIC`)."""
    openapi_enabled: bool = True
    """Serve the OpenAPI document and its UI at `/schema` (`OPENAPI_ENABLED`)."""

    @property
    def signing_kid(self) -> str:
        """The key id that signs new access tokens (the first key)."""
        return self.jwt_keys[0][0]


TraceExporter = Literal["none", "otlp", "console"]
_TRACE_EXPORTERS: tuple[TraceExporter, ...] = ("none", "otlp", "console")


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry traces (the `otel` extra), from OpenTelemetry's own variables.

    Off unless asked for: `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`) or an OTLP
    endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: then
    `otlp`); `OTEL_SDK_DISABLED=true` turns it off whatever else is set. The endpoint,
    headers, sampler (`OTEL_TRACES_SAMPLER`) and service name (`OTEL_SERVICE_NAME`) are read
    by the OpenTelemetry SDK itself.
    """

    exporter: TraceExporter = "none"
    """Where spans go (`OTEL_TRACES_EXPORTER`)."""

    @property
    def enabled(self) -> bool:
        """Whether requests are traced."""
        return self.exporter != "none"


@dataclass(frozen=True, slots=True)
class EventsSettings:
    """`GET /events`, the Server-Sent Events stream (docs/events.md)."""

    enabled: bool = True
    """Serve the stream and run the per-worker hub (`EVENTS_ENABLED`)."""
    heartbeat_s: float = 15.0
    """A comment line this often keeps proxies from idling a stream out
    (`EVENTS_HEARTBEAT_S`)."""
    retry_s: float = 2.0
    """The `retry:` a client waits before reconnecting (`EVENTS_RETRY_MS`)."""
    buffer: int = 256
    """Events a stream holds for a client that reads too slowly; beyond, it is disconnected
    and resumes from its last event id (`EVENTS_BUFFER`)."""
    max_streams_per_user: int = 8
    """Streams a user holds at once on one worker; beyond, 429 (`EVENTS_MAX_STREAMS_PER_USER`)."""
    max_streams_per_worker: int = 2000
    """Streams a worker holds at once; beyond, 503 (`EVENTS_MAX_STREAMS_PER_WORKER`)."""
    poll_interval_s: float = 1.0
    """The hub looks for new events this often even without a notification, and checks its
    listener (`EVENTS_POLL_INTERVAL_MS`)."""
    fallback_poll_interval_s: float = 0.25
    """How often it looks without a listener (PgBouncer without `EVENTS_LISTEN_URL`, or the
    listener down) (`EVENTS_FALLBACK_POLL_MS`)."""
    listen_url: str | None = None
    """Where to `LISTEN` when `DATABASE_URL` cannot (PgBouncer in transaction mode): the
    primary, or the cluster as a host list, directly (`EVENTS_LISTEN_URL`)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated service configuration, one group per concern."""

    app_env: Environment = "development"
    """`development`, `test` or `production` (`APP_ENV`): log format and TLS default."""
    log_level: LogLevel = "info"
    """Lowest level logged (`LOG_LEVEL`)."""
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    """Servers and how to reach them."""
    writer_pool: PoolSettings = field(default_factory=PoolSettings)
    """The primary's pool (`DB_POOL_*` and the shared timeouts)."""
    replica_pool: PoolSettings = field(
        default_factory=lambda: PoolSettings(
            min_size=DEFAULT_REPLICA_POOL_MIN, max_size=DEFAULT_REPLICA_POOL_MAX
        )
    )
    """Each replica's pool (`DB_REPLICA_POOL_*` and the shared timeouts)."""
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    """The replica monitor."""
    server: ServerSettings = field(default_factory=ServerSettings)
    """The HTTP server."""
    redis_url: str | None = None
    """Redis: checked by readiness, and shared login limits (`REDIS_URL`)."""
    auth: AuthSettings = field(default_factory=AuthSettings)
    """Authentication and the operator endpoints' protection."""
    requests: RequestLimits = field(default_factory=RequestLimits)
    """Bounds on receiving requests, per worker."""
    tracing: TracingSettings = field(default_factory=TracingSettings)
    """OpenTelemetry traces (off unless `OTEL_*` variables ask for them)."""
    events: EventsSettings = field(default_factory=EventsSettings)
    """The Server-Sent Events stream."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse and validate the environment; raise `ConfigError` on the first bad value."""
        reader = _Reader(os.environ if environ is None else environ)
        app_env = reader.choice("APP_ENV", _ENVIRONMENTS, "development")
        return cls(
            app_env=app_env,
            log_level=reader.choice("LOG_LEVEL", _LOG_LEVELS, "info", lower=True),
            database=_database(reader, app_env),
            writer_pool=_pool(reader, "DB_POOL", DEFAULT_POOL_MIN, DEFAULT_POOL_MAX),
            replica_pool=_pool(
                reader, "DB_REPLICA_POOL", DEFAULT_REPLICA_POOL_MIN, DEFAULT_REPLICA_POOL_MAX
            ),
            monitor=MonitorSettings(
                interval_s=reader.millis("DB_REPLICA_CHECK_INTERVAL_MS", 1000, minimum=50),
                max_lag_s=reader.number("DB_REPLICA_MAX_LAG_S", 10.0, minimum=0.0),
                token_wait_s=reader.millis("DB_TOKEN_WAIT_MS", 20, minimum=0),
            ),
            server=ServerSettings(
                host=reader.text("HOST", "127.0.0.1"),
                port=reader.integer("PORT", 8000, minimum=1, maximum=65535),
                workers=reader.integer("WORKERS", 1, minimum=1, maximum=64),
                shutdown_timeout_s=reader.number("SHUTDOWN_TIMEOUT_S", 10.0, minimum=0.1),
                drain_delay_s=reader.number("DRAIN_DELAY_S", 0.0, minimum=0.0),
            ),
            redis_url=reader.url("REDIS_URL", schemes=("redis", "rediss", "unix")),
            auth=_auth(reader, app_env),
            tracing=_tracing(reader),
            events=_events(reader),
            requests=RequestLimits(
                header_timeout_s=reader.number(
                    "REQUEST_HEADER_TIMEOUT_S", 10.0, minimum=1.0, maximum=_MAX_HEADER_TIMEOUT_S
                ),
                body_timeout_s=reader.number(
                    "REQUEST_BODY_TIMEOUT_S", 5.0, minimum=0.1, maximum=600.0
                ),
                worker_connections=reader.integer(
                    "WORKER_CONNECTIONS", 1024, minimum=2 * PROBE_RESERVE, maximum=65536
                ),
            ),
        )


def _database(reader: _Reader, app_env: Environment) -> DatabaseSettings:
    url = reader.cluster_url("DATABASE_URL")
    if url is None and app_env == "production":
        raise ConfigError("DATABASE_URL", "required when APP_ENV=production")
    members: tuple[Member, ...] = ()
    attrs = "any"
    if url is not None:
        hosts = parse_host_list(url)  # validated by `cluster_url`
        attrs = hosts.target_session_attrs
        if attrs in ("read-only", "standby"):
            raise ConfigError(
                "DATABASE_URL",
                f"target_session_attrs={attrs} cannot apply: the service writes, so it needs"
                " the primary (reads already prefer standbys)",
            )
        if len(hosts.members) > 1:
            members = hosts.members
    replica_urls = reader.url_list("DATABASE_REPLICA_URLS")
    single_replica = reader.url("DATABASE_REPLICA_URL")
    if single_replica is not None and single_replica not in replica_urls:
        replica_urls = (*replica_urls, single_replica)
    if replica_urls and url is None:
        raise ConfigError("DATABASE_REPLICA_URLS", "set DATABASE_URL too")
    if replica_urls and members:
        raise ConfigError(
            "DATABASE_REPLICA_URLS",
            "leave it unset when DATABASE_URL names several hosts (their roles are found)",
        )
    default_ssl: SslMode = "verify-full" if app_env == "production" else "disable"
    return DatabaseSettings(
        url=url,
        members=members,
        target_session_attrs=attrs,
        replica_urls=replica_urls,
        sslmode=reader.choice("DB_SSLMODE", _SSL_MODES, default_ssl),
        pgbouncer=reader.boolean("DB_PGBOUNCER", default=False),
        wait_for_primary_s=reader.number("DB_WAIT_FOR_PRIMARY_S", 0.0, minimum=0.0),
    )


MIN_JWT_KEY_BYTES = 32


def _auth(reader: _Reader, app_env: Environment) -> AuthSettings:
    keys = _jwt_keys(reader.secret("AUTH_JWT_KEYS"))
    if not keys and app_env == "production":
        raise ConfigError("AUTH_JWT_KEYS", "required when APP_ENV=production")
    metrics_token = reader.secret("METRICS_TOKEN")
    metrics_public = reader.boolean("METRICS_PUBLIC", default=False)
    if app_env == "production" and metrics_token is None and not metrics_public:
        raise ConfigError(
            "METRICS_TOKEN",
            "required when APP_ENV=production (or set METRICS_PUBLIC=true to serve /metrics"
            " and /health/metrics to anyone)",
        )
    return AuthSettings(
        jwt_keys=keys,
        access_token_ttl_s=reader.number("AUTH_ACCESS_TOKEN_TTL_S", 900.0, minimum=10.0),
        refresh_token_ttl_s=reader.number("AUTH_REFRESH_TOKEN_TTL_S", 30 * 86400.0, minimum=60.0),
        login_limit_per_username=reader.integer(
            "AUTH_LOGIN_LIMIT_PER_USERNAME", 10, minimum=1, maximum=100_000
        ),
        login_limit_per_address=reader.integer(
            "AUTH_LOGIN_LIMIT_PER_ADDRESS", 50, minimum=1, maximum=1_000_000
        ),
        login_window_s=reader.number("AUTH_LOGIN_WINDOW_S", 60.0, minimum=1.0),
        metrics_token=metrics_token,
        metrics_public=metrics_public,
        openapi_enabled=reader.boolean("OPENAPI_ENABLED", default=True),
    )


def _jwt_keys(raw: str | None) -> tuple[tuple[str, bytes], ...]:
    """`kid:secret,kid:secret`: URL-safe base64 secrets of at least 32 bytes, ids unique."""
    if raw is None:
        return ()
    keys: list[tuple[str, bytes]] = []
    for item in raw.split(","):
        kid, colon, encoded = item.strip().partition(":")
        if not colon or not kid or not kid.isascii() or not kid.replace("-", "").isalnum():
            raise ConfigError("AUTH_JWT_KEYS", "expected kid:secret pairs, kid of a-z, 0-9, -")
        try:
            secret = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (ValueError, binascii.Error):
            raise ConfigError("AUTH_JWT_KEYS", f"the secret of {kid!r} is not base64") from None
        if len(secret) < MIN_JWT_KEY_BYTES:
            raise ConfigError(
                "AUTH_JWT_KEYS", f"the secret of {kid!r} must be at least {MIN_JWT_KEY_BYTES} bytes"
            )
        if any(kid == seen for seen, _ in keys):
            raise ConfigError("AUTH_JWT_KEYS", f"key id {kid!r} appears twice")
        keys.append((kid, secret))
    return tuple(keys)


def _events(reader: _Reader) -> EventsSettings:
    return EventsSettings(
        enabled=reader.boolean("EVENTS_ENABLED", default=True),
        heartbeat_s=reader.number("EVENTS_HEARTBEAT_S", 15.0, minimum=0.05, maximum=3600.0),
        retry_s=reader.millis("EVENTS_RETRY_MS", 2000, minimum=0),
        buffer=reader.integer("EVENTS_BUFFER", 256, minimum=1, maximum=100_000),
        max_streams_per_user=reader.integer(
            "EVENTS_MAX_STREAMS_PER_USER", 8, minimum=1, maximum=10_000
        ),
        max_streams_per_worker=reader.integer(
            "EVENTS_MAX_STREAMS_PER_WORKER", 2000, minimum=1, maximum=1_000_000
        ),
        poll_interval_s=reader.millis("EVENTS_POLL_INTERVAL_MS", 1000, minimum=10),
        fallback_poll_interval_s=reader.millis("EVENTS_FALLBACK_POLL_MS", 250, minimum=10),
        listen_url=reader.cluster_url("EVENTS_LISTEN_URL"),
    )


def _tracing(reader: _Reader) -> TracingSettings:
    """OpenTelemetry's variables: an exporter named, or an OTLP endpoint given."""
    if reader.boolean("OTEL_SDK_DISABLED", default=False):
        return TracingSettings()
    named = reader.text("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    endpoint = reader.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") or reader.text(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )
    if not named:
        return TracingSettings(exporter="otlp" if endpoint else "none")
    for exporter in _TRACE_EXPORTERS:
        if named == exporter:
            return TracingSettings(exporter=exporter)
    raise ConfigError(
        "OTEL_TRACES_EXPORTER", f"expected one of {', '.join(_TRACE_EXPORTERS)}, got {named[:20]!r}"
    )


def _pool(reader: _Reader, prefix: str, default_min: int, default_max: int) -> PoolSettings:
    """`<prefix>_MIN`/`<prefix>_MAX`, and the timeouts both kinds of pool share."""
    min_size = reader.integer(f"{prefix}_MIN", default_min, minimum=0, maximum=1000)
    max_size = reader.integer(f"{prefix}_MAX", default_max, minimum=1, maximum=1000)
    if min_size > max_size:
        raise ConfigError(f"{prefix}_MIN", f"must not exceed {prefix}_MAX ({max_size})")
    return PoolSettings(
        min_size=min_size,
        max_size=max_size,
        timeout_s=reader.millis("DB_POOL_TIMEOUT_MS", 2000, minimum=1),
        connect_timeout_s=reader.millis("DB_CONNECT_TIMEOUT_MS", 2000, minimum=1),
        statement_timeout_s=reader.millis("DB_STATEMENT_TIMEOUT_MS", 5000, minimum=0),
        idle_timeout_s=reader.millis("DB_IDLE_TIMEOUT_MS", 30000, minimum=0),
        max_lifetime_s=float(reader.integer("DB_MAX_LIFETIME_S", 1800, minimum=1)),
    )


class _Reader:
    """Typed access to environment variables that raises `ConfigError` with the name."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def secret(self, name: str) -> str | None:
        """A value that is never echoed in an error."""
        return self._raw(name)

    def integer(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"expected a whole number, got {raw[:20]!r}") from None
        _check_range(name, value, minimum, maximum)
        return value

    def millis(self, name: str, default: int, *, minimum: int) -> float:
        """A whole number of milliseconds (the documented unit), returned in seconds."""
        return self.integer(name, default, minimum=minimum) / 1000

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"expected a number, got {raw[:20]!r}") from None
        if not math.isfinite(value):
            raise ConfigError(name, "expected a finite number")
        _check_range(name, value, minimum, maximum)
        return value

    def boolean(self, name: str, *, default: bool) -> bool:
        raw = self._env.get(name)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(name, "expected true or false")

    def choice(self, name: str, options: tuple[_T, ...], default: _T, *, lower: bool = False) -> _T:
        raw = self._raw(name)
        if raw is None:
            return default
        wanted = raw.lower() if lower else raw
        for option in options:
            if wanted == option:
                return option
        raise ConfigError(name, f"expected one of {', '.join(options)}, got {raw[:20]!r}")

    def url(self, name: str, *, schemes: tuple[str, ...] = _POSTGRES_SCHEMES) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        return _validate_url(name, raw, schemes)

    def cluster_url(self, name: str) -> str | None:
        """A PostgreSQL URL that may name several hosts (libpq's host list)."""
        raw = self._raw(name)
        if raw is None:
            return None
        scheme = raw.partition("://")[0].split("+", 1)[0]
        if scheme not in _POSTGRES_SCHEMES:
            raise ConfigError(name, f"scheme must be one of {', '.join(_POSTGRES_SCHEMES)}")
        try:
            hosts = parse_host_list(raw)
        except HostListError as error:
            raise ConfigError(name, str(error)) from None
        if len(hosts.members) == 1:
            return _validate_url(name, raw, _POSTGRES_SCHEMES)
        return raw

    def url_list(self, name: str) -> tuple[str, ...]:
        raw = self._raw(name)
        if raw is None:
            return ()
        urls = [part.strip() for part in raw.split(",") if part.strip()]
        return tuple(_validate_url(name, url, _POSTGRES_SCHEMES) for url in urls)


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(name, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"must be at most {maximum}")


def _validate_url(name: str, url: str, schemes: tuple[str, ...]) -> str:
    """Check the shape of a URL without ever echoing it (it may hold a password)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a non-numeric port
    except ValueError:
        raise ConfigError(name, "is not a valid URL") from None
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in schemes:
        raise ConfigError(name, f"scheme must be one of {', '.join(schemes)}")
    if scheme != "unix" and not parts.hostname and "host=" not in parts.query:
        raise ConfigError(name, "has no host")
    return url
