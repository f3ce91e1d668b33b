"""Settings read from the environment once, validated, and frozen.

Every variable of DESIGN section 3 is parsed here and nowhere else. A bad value raises
`ConfigError`, whose message names the variable and what is wrong, never the value itself
when the value may hold a secret (URLs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from app.redact import redact_url

Environment = Literal["development", "test", "production"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

_ENVIRONMENTS: tuple[Environment, ...] = ("development", "test", "production")
_SSL_MODES: tuple[SslMode, ...] = (
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
)
_T = TypeVar("_T", bound=str)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Pool sizes measured on a 2-core box with PostgreSQL on the same host (README, Performance):
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
    """Sizing and timeouts of one connection pool."""

    min_size: int
    max_size: int
    timeout_s: float
    connect_timeout_s: float
    statement_timeout_ms: int
    idle_timeout_s: float
    max_lifetime_s: float


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated service configuration (DESIGN section 3)."""

    app_env: Environment = "development"
    database_url: str | None = None
    replica_urls: tuple[str, ...] = ()
    pool_min: int = DEFAULT_POOL_MIN
    pool_max: int = DEFAULT_POOL_MAX
    replica_pool_min: int = DEFAULT_REPLICA_POOL_MIN
    replica_pool_max: int = DEFAULT_REPLICA_POOL_MAX
    pool_timeout_ms: int = 2000
    connect_timeout_ms: int = 2000
    statement_timeout_ms: int = 5000
    idle_timeout_ms: int = 30000
    max_lifetime_s: int = 1800
    replica_max_lag_s: float = 10.0
    replica_check_interval_ms: int = 1000
    sslmode: SslMode = "disable"
    pgbouncer: bool = False
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    wait_for_database_s: float = 0.0
    shutdown_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse and validate the environment; raise `ConfigError` on the first bad value."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        app_env = reader.choice("APP_ENV", _ENVIRONMENTS, "development")
        database_url = reader.url("DATABASE_URL")
        if database_url is None and app_env == "production":
            raise ConfigError("DATABASE_URL", "required when APP_ENV=production")
        replica_urls = reader.url_list("DATABASE_REPLICA_URLS")
        single_replica = reader.url("DATABASE_REPLICA_URL")
        if single_replica is not None and single_replica not in replica_urls:
            replica_urls = (*replica_urls, single_replica)
        if replica_urls and database_url is None:
            raise ConfigError("DATABASE_REPLICA_URLS", "set DATABASE_URL too")
        pool_min = reader.integer("DB_POOL_MIN", DEFAULT_POOL_MIN, minimum=0, maximum=1000)
        pool_max = reader.integer("DB_POOL_MAX", DEFAULT_POOL_MAX, minimum=1, maximum=1000)
        if pool_min > pool_max:
            raise ConfigError("DB_POOL_MIN", f"must not exceed DB_POOL_MAX ({pool_max})")
        replica_min = reader.integer(
            "DB_REPLICA_POOL_MIN", DEFAULT_REPLICA_POOL_MIN, minimum=0, maximum=1000
        )
        replica_max = reader.integer(
            "DB_REPLICA_POOL_MAX", DEFAULT_REPLICA_POOL_MAX, minimum=1, maximum=1000
        )
        if replica_min > replica_max:
            raise ConfigError(
                "DB_REPLICA_POOL_MIN", f"must not exceed DB_REPLICA_POOL_MAX ({replica_max})"
            )
        default_ssl: SslMode = "verify-full" if app_env == "production" else "disable"
        return cls(
            app_env=app_env,
            database_url=database_url,
            replica_urls=replica_urls,
            pool_min=pool_min,
            pool_max=pool_max,
            replica_pool_min=replica_min,
            replica_pool_max=replica_max,
            pool_timeout_ms=reader.integer("DB_POOL_TIMEOUT_MS", 2000, minimum=1),
            connect_timeout_ms=reader.integer("DB_CONNECT_TIMEOUT_MS", 2000, minimum=1),
            statement_timeout_ms=reader.integer("DB_STATEMENT_TIMEOUT_MS", 5000, minimum=0),
            idle_timeout_ms=reader.integer("DB_IDLE_TIMEOUT_MS", 30000, minimum=0),
            max_lifetime_s=reader.integer("DB_MAX_LIFETIME_S", 1800, minimum=1),
            replica_max_lag_s=reader.number("DB_REPLICA_MAX_LAG_S", 10.0, minimum=0.0),
            replica_check_interval_ms=reader.integer(
                "DB_REPLICA_CHECK_INTERVAL_MS", 1000, minimum=50
            ),
            sslmode=reader.choice("DB_SSLMODE", _SSL_MODES, default_ssl),
            pgbouncer=reader.boolean("DB_PGBOUNCER", default=False),
            redis_url=reader.url("REDIS_URL", schemes=("redis", "rediss", "unix")),
            host=reader.text("HOST", "127.0.0.1"),
            port=reader.integer("PORT", 8000, minimum=1, maximum=65535),
            workers=reader.integer("WORKERS", 1, minimum=1, maximum=64),
            wait_for_database_s=reader.number("DB_WAIT_FOR_PRIMARY_S", 0.0, minimum=0.0),
            shutdown_timeout_s=reader.number("SHUTDOWN_TIMEOUT_S", 10.0, minimum=0.1),
        )

    @property
    def writer_pool(self) -> PoolSettings:
        """Pool settings of the writer (primary)."""
        return self._pool(self.pool_min, self.pool_max)

    @property
    def replica_pool(self) -> PoolSettings:
        """Pool settings of each replica."""
        return self._pool(self.replica_pool_min, self.replica_pool_max)

    def _pool(self, min_size: int, max_size: int) -> PoolSettings:
        return PoolSettings(
            min_size=min_size,
            max_size=max_size,
            timeout_s=self.pool_timeout_ms / 1000,
            connect_timeout_s=self.connect_timeout_ms / 1000,
            statement_timeout_ms=self.statement_timeout_ms,
            idle_timeout_s=self.idle_timeout_ms / 1000,
            max_lifetime_s=float(self.max_lifetime_s),
        )

    def describe(self) -> dict[str, object]:
        """A loggable summary with every URL redacted."""
        return {
            "app_env": self.app_env,
            "database_url": redact_url(self.database_url) if self.database_url else None,
            "replica_urls": [redact_url(url) for url in self.replica_urls],
            "pool": [self.pool_min, self.pool_max],
            "replica_pool": [self.replica_pool_min, self.replica_pool_max],
            "pgbouncer": self.pgbouncer,
            "redis": redact_url(self.redis_url) if self.redis_url else None,
            "workers": self.workers,
        }


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

    def number(self, name: str, default: float, *, minimum: float | None = None) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"expected a number, got {raw[:20]!r}") from None
        if not math.isfinite(value):
            raise ConfigError(name, "expected a finite number")
        _check_range(name, value, minimum, None)
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

    def choice(self, name: str, options: tuple[_T, ...], default: _T) -> _T:
        raw = self._raw(name)
        if raw is None:
            return default
        for option in options:
            if raw == option:
                return option
        raise ConfigError(name, f"expected one of {', '.join(options)}, got {raw[:20]!r}")

    def url(
        self, name: str, *, schemes: tuple[str, ...] = ("postgresql", "postgres")
    ) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        return _validate_url(name, raw, schemes)

    def url_list(self, name: str) -> tuple[str, ...]:
        raw = self._raw(name)
        if raw is None:
            return ()
        urls = [part.strip() for part in raw.split(",") if part.strip()]
        return tuple(_validate_url(name, url, ("postgresql", "postgres")) for url in urls)


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
