"""Settings: defaults, parsing, and errors that name the variable and never the secret."""

from __future__ import annotations

import pytest

from app.config import ConfigError, Settings

URL = "postgresql://app:S3cret-Pw@db.internal:5432/messenger"
KEY = "k1:" + "Tm90LWEtcmVhbC1rZXktYnV0LTMyLWRpc3RpbmN0LWJ5dGVz"[:43]  # 32 bytes, base64url
PRODUCTION_AUTH = {"AUTH_JWT_KEYS": KEY, "METRICS_TOKEN": "scrape-S3cret-0123456789abcdef"}


def test_defaults_for_development() -> None:
    settings = Settings.from_env({})
    assert settings.app_env == "development"
    assert settings.log_level == "info"
    assert settings.database.url is None
    assert settings.database.replica_urls == ()
    assert settings.database.sslmode == "disable"
    assert settings.database.pgbouncer is False
    server = settings.server
    assert (server.host, server.port, server.workers) == ("127.0.0.1", 8000, 1)
    assert settings.writer_pool.timeout_s == 2.0
    assert settings.writer_pool.statement_timeout_s == 5.0
    assert (settings.writer_pool.min_size, settings.writer_pool.max_size) == (4, 32)
    assert (settings.replica_pool.min_size, settings.replica_pool.max_size) == (4, 10)
    assert settings.monitor.max_lag_s == 10.0
    assert settings.monitor.interval_s == 1.0
    assert settings == Settings(), "the dataclass defaults are the documented ones"


def test_production_requires_database_url_and_defaults_to_verify_full() -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: required"):
        Settings.from_env({"APP_ENV": "production"})
    settings = Settings.from_env({"APP_ENV": "production", "DATABASE_URL": URL, **PRODUCTION_AUTH})
    assert settings.database.sslmode == "verify-full"


def test_replica_urls_comma_separated_and_single() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": URL,
            "DATABASE_REPLICA_URLS": "postgresql://r0/db, postgresql://r1/db",
            "DATABASE_REPLICA_URL": "postgresql://r2/db",
        }
    )
    assert settings.database.replica_urls == (
        "postgresql://r0/db",
        "postgresql://r1/db",
        "postgresql://r2/db",
    )


def test_pool_settings_map_to_both_pools() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": URL,
            "DB_POOL_MIN": "3",
            "DB_POOL_MAX": "7",
            "DB_REPLICA_POOL_MIN": "1",
            "DB_REPLICA_POOL_MAX": "2",
            "DB_POOL_TIMEOUT_MS": "250",
            "DB_IDLE_TIMEOUT_MS": "1500",
        }
    )
    assert (settings.writer_pool.min_size, settings.writer_pool.max_size) == (3, 7)
    assert (settings.replica_pool.min_size, settings.replica_pool.max_size) == (1, 2)
    assert settings.writer_pool.timeout_s == 0.25
    assert settings.replica_pool.idle_timeout_s == 1.5


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"APP_ENV": "staging"}, "APP_ENV"),
        ({"DB_POOL_MAX": "ten"}, "DB_POOL_MAX"),
        ({"DB_POOL_MAX": "0"}, "DB_POOL_MAX"),
        ({"DB_POOL_MIN": "-1"}, "DB_POOL_MIN"),
        ({"DB_POOL_MIN": "20", "DB_POOL_MAX": "10"}, "DB_POOL_MIN"),
        ({"DB_REPLICA_POOL_MIN": "5", "DB_REPLICA_POOL_MAX": "2"}, "DB_REPLICA_POOL_MIN"),
        ({"DB_POOL_TIMEOUT_MS": "0"}, "DB_POOL_TIMEOUT_MS"),
        ({"DB_REPLICA_MAX_LAG_S": "nan"}, "DB_REPLICA_MAX_LAG_S"),
        ({"DB_REPLICA_MAX_LAG_S": "-1"}, "DB_REPLICA_MAX_LAG_S"),
        ({"DB_SSLMODE": "maybe"}, "DB_SSLMODE"),
        ({"DB_PGBOUNCER": "perhaps"}, "DB_PGBOUNCER"),
        ({"PORT": "70000"}, "PORT"),
        ({"WORKERS": "0"}, "WORKERS"),
        ({"DATABASE_URL": "mysql://u:S3cret-Pw@h/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:S3cret-Pw@h:notaport/db"}, "DATABASE_URL"),
        (
            {"DATABASE_URL": URL, "DATABASE_REPLICA_URLS": "http://u:S3cret-Pw@r/db"},
            "DATABASE_REPLICA_URLS",
        ),
        ({"DATABASE_REPLICA_URLS": "postgresql://r/db"}, "DATABASE_REPLICA_URLS"),
        ({"REDIS_URL": "postgresql://u:S3cret-Pw@h/db"}, "REDIS_URL"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable_and_hide_secrets(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert "S3cret-Pw" not in str(caught.value)


def test_units_are_converted_once_to_seconds() -> None:
    settings = Settings.from_env(
        {
            "DB_CONNECT_TIMEOUT_MS": "1500",
            "DB_STATEMENT_TIMEOUT_MS": "0",
            "DB_MAX_LIFETIME_S": "60",
            "DB_REPLICA_CHECK_INTERVAL_MS": "250",
            "DB_WAIT_FOR_PRIMARY_S": "2.5",
            "SHUTDOWN_TIMEOUT_S": "3",
        }
    )
    assert settings.writer_pool.connect_timeout_s == 1.5
    assert settings.replica_pool.statement_timeout_s == 0.0
    assert settings.replica_pool.max_lifetime_s == 60.0
    assert settings.monitor.interval_s == 0.25
    assert settings.database.wait_for_primary_s == 2.5
    assert settings.server.shutdown_timeout_s == 3.0


@pytest.mark.parametrize(("raw", "level"), [("debug", "debug"), ("WARNING", "warning")])
def test_log_level(raw: str, level: str) -> None:
    assert Settings.from_env({"LOG_LEVEL": raw}).log_level == level


def test_production_requires_signing_keys_and_protected_operator_endpoints() -> None:
    base = {"APP_ENV": "production", "DATABASE_URL": URL}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**base, "METRICS_TOKEN": "x"})
    assert caught.value.variable == "AUTH_JWT_KEYS"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**base, "AUTH_JWT_KEYS": KEY})
    assert caught.value.variable == "METRICS_TOKEN"
    public = Settings.from_env({**base, "AUTH_JWT_KEYS": KEY, "METRICS_PUBLIC": "true"})
    assert public.auth.metrics_public is True
    assert public.auth.metrics_token is None


def test_signing_keys_rotate_by_key_id() -> None:
    auth = Settings.from_env({"AUTH_JWT_KEYS": f"new:{'B' * 43}, {KEY}"}).auth
    assert [kid for kid, _ in auth.jwt_keys] == ["new", "k1"]
    assert auth.signing_kid == "new"
    assert all(len(secret) == 32 for _, secret in auth.jwt_keys)


@pytest.mark.parametrize(
    "raw",
    ["k1", "k1:S3cret-short", ":" + "A" * 43, f"k 1:{'A' * 43}", f"{KEY},{KEY}", "k1:%%%S3cret"],
)
def test_bad_signing_keys_are_refused_without_echoing_them(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AUTH_JWT_KEYS": raw})
    assert caught.value.variable == "AUTH_JWT_KEYS"
    assert "S3cret" not in str(caught.value)


def test_production_names_every_missing_variable_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"APP_ENV": "production"})
    message = str(caught.value)
    assert message.startswith("DATABASE_URL: required when APP_ENV=production; so are ")
    assert "AUTH_JWT_KEYS" in message
    assert "METRICS_TOKEN" in message
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"APP_ENV": "production", "METRICS_PUBLIC": "true"})
    assert "AUTH_JWT_KEYS" in str(caught.value)
    assert "METRICS_TOKEN" not in str(caught.value)
