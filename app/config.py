"""Settings read from the environment once, validated, grouped, and frozen.

Every variable of the README's configuration table is parsed here and nowhere else. Units are
converted once: the documented names keep their `_MS`/`_S` suffixes outside, every duration
is in seconds inside. A bad value raises `ConfigError`, whose message names the variable and
what is wrong, never the value itself when the value may hold a secret (URLs).
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
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
    idle_timeout_s: float = 300.0
    """Connections above the minimum idle this long are closed; 0 never (`DB_IDLE_TIMEOUT_MS`).
    Asyncpg's own default: at 30 s, the 1,000-user bench's pools shrank between bursts and
    regrew under load, and pool waits made its p99 3-4x the baseline's (docs/performance.md)."""
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
    http2: bool = False
    """Also serve cleartext HTTP/2 (prior knowledge) besides HTTP/1.1 (`HTTP2_ENABLED`). Off:
    an HTTP/2 preface is refused at once. On: granian has no header timeout for HTTP/2, so a
    connection whose peer does not answer a ping within `REQUEST_HEADER_TIMEOUT_S` is closed
    (docs/security.md)."""


PROBE_RESERVE = 16
"""Connections per worker that only the operator endpoints may use (probes, metrics)."""
_MAX_HEADER_TIMEOUT_S = 60.0  # granian's bound on --http1-header-read-timeout


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """How long a worker waits for a request and how many it holds (granian's flags and the
    request deadline middleware, `app.ops.request_bounds`)."""

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
    """Serve the OpenAPI document and its UI at `/schema` (`OPENAPI_ENABLED`; off by default
    in production)."""
    refresh_token_max_lifetime_s: float = 90 * 86400.0
    """A login's refresh tokens stop working this long after the login, however often they
    are rotated (`AUTH_REFRESH_TOKEN_MAX_LIFETIME_S`)."""

    @property
    def signing_kid(self) -> str:
        """The key id that signs new access tokens (the first key)."""
        return self.jwt_keys[0][0]


@dataclass(frozen=True, slots=True)
class AbuseLimits:
    """Limits on what costs the service work (docs/security.md, "Limits"): registrations,
    password hashing, chat creation and sends, and whom to believe about a client's address.

    Counted in Redis when `REDIS_URL` is set (every instance together), per worker otherwise.
    """

    register_limit_per_address: int = 5
    """Registrations per client address and window (`REGISTER_LIMIT_PER_ADDRESS`)."""
    register_limit_global: int = 300
    """Registrations per window in all (`REGISTER_LIMIT_GLOBAL`; per worker without Redis)."""
    register_window_s: int = 60
    """The window registrations count in (`REGISTER_WINDOW_S`)."""
    login_hash_queue: int = 16
    """Logins waiting for a password check at most per worker; more answer 503 with
    `Retry-After` at once (`LOGIN_HASH_QUEUE`)."""
    register_hash_queue: int = 2
    """Registrations waiting for a password hash at most per worker (`REGISTER_HASH_QUEUE`)."""
    chat_create_limit: int = 30
    """Chats a user may create per window (`CHAT_CREATE_LIMIT`)."""
    send_limit: int = 600
    """Messages a user may send per window (`SEND_LIMIT`)."""
    user_window_s: int = 60
    """The window the chat and send limits count in (`USER_LIMIT_WINDOW_S`)."""
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    """Peers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`, CIDRs): the client's
    address is then the right-most one not in these networks. Empty: the TCP peer."""
    memory_max_keys: int = 500_000
    """Keys the in-process limiter holds at most (`RATE_LIMIT_MEMORY_MAX_KEYS`)."""


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
    limits: AbuseLimits = field(default_factory=AbuseLimits)
    """Rate limits, hashing bounds and trusted proxies."""
    tracing: TracingSettings = field(default_factory=TracingSettings)
    """OpenTelemetry traces (off unless `OTEL_*` variables ask for them)."""
    events: EventsSettings = field(default_factory=EventsSettings)
    """The Server-Sent Events stream."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse and validate the environment; raise `ConfigError` on the first bad value."""
        reader = _Reader(os.environ if environ is None else environ)
        app_env = reader.choice("APP_ENV", _ENVIRONMENTS, "development")
        if app_env == "production":
            _require_production_variables(reader)
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
                http2=reader.boolean("HTTP2_ENABLED", default=False),
            ),
            redis_url=_redis_url(reader),
            auth=_auth(reader, app_env),
            limits=_limits(reader),
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


_PRODUCTION_REQUIRED = {
    "DATABASE_URL": "DATABASE_URL",
    "AUTH_JWT_KEYS": "AUTH_JWT_KEYS",
    "METRICS_TOKEN": "METRICS_TOKEN (or METRICS_PUBLIC=true to serve /metrics to anyone)",
}


def _require_production_variables(reader: _Reader) -> None:
    """Every variable production requires and lacks, in one error (not one per run)."""
    missing = [name for name in _PRODUCTION_REQUIRED if reader.secret(name) is None]
    if "METRICS_TOKEN" in missing and reader.boolean("METRICS_PUBLIC", default=False):
        missing.remove("METRICS_TOKEN")
    if not missing:
        return
    first, *others = missing
    problem = "required when APP_ENV=production"
    if others:
        problem += f"; so are {', '.join(_PRODUCTION_REQUIRED[name] for name in others)}"
    elif first == "METRICS_TOKEN":
        problem += " (or set METRICS_PUBLIC=true to serve /metrics and /health/metrics to anyone)"
    raise ConfigError(first, problem)


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
MIN_METRICS_TOKEN_CHARS = 24
REDIS_EXTRA = "pip install 'messenger-data-service[redis]'"


def _redis_url(reader: _Reader) -> str | None:
    url = reader.url("REDIS_URL", schemes=("redis", "rediss", "unix"))
    if url is not None and importlib.util.find_spec("redis") is None:
        raise ConfigError(
            "REDIS_URL", f"is set but the redis extra is not installed ({REDIS_EXTRA})"
        )
    return url


def _limits(reader: _Reader) -> AbuseLimits:
    return AbuseLimits(
        register_limit_per_address=reader.integer(
            "REGISTER_LIMIT_PER_ADDRESS", 5, minimum=1, maximum=1_000_000
        ),
        register_limit_global=reader.integer(
            "REGISTER_LIMIT_GLOBAL", 300, minimum=1, maximum=10_000_000
        ),
        register_window_s=reader.integer("REGISTER_WINDOW_S", 60, minimum=1, maximum=86400),
        login_hash_queue=reader.integer("LOGIN_HASH_QUEUE", 16, minimum=0, maximum=10_000),
        register_hash_queue=reader.integer("REGISTER_HASH_QUEUE", 2, minimum=0, maximum=10_000),
        chat_create_limit=reader.integer("CHAT_CREATE_LIMIT", 30, minimum=1, maximum=10_000_000),
        send_limit=reader.integer("SEND_LIMIT", 600, minimum=1, maximum=10_000_000),
        user_window_s=reader.integer("USER_LIMIT_WINDOW_S", 60, minimum=1, maximum=86400),
        trusted_proxies=_networks(reader, "TRUSTED_PROXIES"),
        memory_max_keys=reader.integer(
            "RATE_LIMIT_MEMORY_MAX_KEYS", 500_000, minimum=1000, maximum=100_000_000
        ),
    )


def _networks(reader: _Reader, name: str) -> tuple[IPv4Network | IPv6Network, ...]:
    raw = reader.text(name, "")
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(name, f"expected addresses or CIDRs, got {item[:50]!r}") from None
    return tuple(networks)


MIN_DISTINCT_KEY_BYTES = 10


def _weak_secret(secret: bytes) -> bool:
    """Too few distinct bytes for a random secret (all zeros, a short repeated pattern):
    32 random bytes hold about 30 distinct values, fewer than 10 practically never."""
    return len(set(secret)) < MIN_DISTINCT_KEY_BYTES


def _auth(reader: _Reader, app_env: Environment) -> AuthSettings:
    keys = _jwt_keys(reader.secret("AUTH_JWT_KEYS"))
    if not keys and app_env == "production":
        raise ConfigError("AUTH_JWT_KEYS", "required when APP_ENV=production")
    metrics_token = reader.secret("METRICS_TOKEN")
    metrics_public = reader.boolean("METRICS_PUBLIC", default=False)
    if app_env == "production":
        for kid, secret in keys:
            if _weak_secret(secret):
                raise ConfigError(
                    "AUTH_JWT_KEYS",
                    f"the secret of {kid!r} is not random (too few distinct bytes):"
                    " make one with `openssl rand -base64 32`",
                )
        if metrics_token is not None and (
            len(metrics_token) < MIN_METRICS_TOKEN_CHARS
            or len(set(metrics_token)) < MIN_METRICS_TOKEN_CHARS // 2
        ):
            raise ConfigError(
                "METRICS_TOKEN",
                f"too weak for production: at least {MIN_METRICS_TOKEN_CHARS} characters with"
                f" {MIN_METRICS_TOKEN_CHARS // 2} distinct (`openssl rand -hex 24`)",
            )
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
        openapi_enabled=reader.boolean("OPENAPI_ENABLED", default=app_env != "production"),
        refresh_token_max_lifetime_s=reader.number(
            "AUTH_REFRESH_TOKEN_MAX_LIFETIME_S", 90 * 86400.0, minimum=60.0
        ),
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
        idle_timeout_s=reader.millis("DB_IDLE_TIMEOUT_MS", 300000, minimum=0),
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
            parse_host_list(raw)  # libpq's grammar (app.dsn), not urlsplit's netloc rules
        except HostListError as error:
            raise ConfigError(name, str(error)) from None
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
