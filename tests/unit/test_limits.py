"""The rate limiter (`limits`' sliding window counter over a bounded in-memory store, or
Redis), the password hash budgets, the trusted-proxy client address, and the settings that
refuse weak production secrets."""

from __future__ import annotations

import asyncio
import time
from ipaddress import ip_network

import pytest

from app.config import ConfigError, Settings
from app.security.clientaddr import client_address
from app.security.passwords import HashingBusyError, Passwords
from app.security.ratelimit import BoundedMemoryStorage, Limiter, LimiterUnavailableError, Rate
from tests.support.redis_server import redis_server

LOGIN = Rate("login", 3, 60)
KEYS_MEASURED = 120_000
PER_ATTEMPT_BOUND_S = 200e-6


def test_hit_counts_and_answers_the_wait_test_does_not_count() -> None:
    async def run() -> None:
        limiter = Limiter.in_memory()
        assert [await limiter.test(LOGIN, "k") for _ in range(10)] == [0] * 10
        assert [await limiter.hit(LOGIN, "k") for _ in range(3)] == [0, 0, 0]
        wait = await limiter.hit(LOGIN, "k")
        assert 1 <= wait <= 120
        assert await limiter.test(LOGIN, "k") >= 1
        assert await limiter.hit(LOGIN, "other") == 0
        assert await limiter.hit(Rate("another", 3, 60), "k") == 0  # its own namespace

    asyncio.run(run())


def test_the_memory_store_is_bounded_and_evicts_the_oldest() -> None:
    async def run() -> None:
        limiter = Limiter.in_memory(max_keys=1000)
        storage = limiter.storage
        assert isinstance(storage, BoundedMemoryStorage)
        for n in range(5000):
            await limiter.hit(LOGIN, f"key{n}")
        assert len(storage) == 1000
        assert storage.evicted == 4000

    asyncio.run(run())


def test_expired_keys_leave_the_memory_store_without_a_sweep() -> None:
    async def run() -> None:
        storage = BoundedMemoryStorage()
        for n in range(100):
            await storage.incr(f"old{n}", 0.01)
        await asyncio.sleep(0.02)
        for n in range(40):
            await storage.incr(f"new{n}", 60)
        assert len(storage) == 20 + 40  # two expired keys dropped per new one
        assert await storage.get("old99") == 0

    asyncio.run(run())


def test_an_attempt_costs_microseconds_with_over_100k_keys() -> None:
    """Issue 19: the hand-written limiter rebuilt its dict past 100k keys (12 ms an attempt);
    `limits`' own MemoryStorage sweeps every key on the loop (25 ms an attempt at 120k)."""

    async def run() -> float:
        limiter = Limiter.in_memory()
        for n in range(KEYS_MEASURED):
            await limiter.hit(LOGIN, f"junk{n}")
        started = time.perf_counter()
        rounds = 20_000
        for n in range(rounds):
            await limiter.hit(LOGIN, f"more{n}")
            await limiter.test(LOGIN, f"junk{n}")
        return (time.perf_counter() - started) / rounds

    per_attempt = asyncio.run(run())
    print(f"\nper attempt (hit + test) with {KEYS_MEASURED} keys: {per_attempt * 1e6:.1f} us")
    assert per_attempt < PER_ATTEMPT_BOUND_S


def test_the_redis_limiter_counts_for_everyone_and_fails_as_unavailable() -> None:
    async def run(url: str) -> None:
        first, second = Limiter.redis(url), Limiter.redis(url)
        try:
            assert [await first.hit(LOGIN, "shared") for _ in range(2)] == [0, 0]
            assert await second.hit(LOGIN, "shared") == 0
            assert await second.test(LOGIN, "shared") >= 1
            assert await first.hit(LOGIN, "shared") >= 1
        finally:
            await first.aclose()
            await second.aclose()

    with redis_server("limits-test-password") as (url, process):
        asyncio.run(run(url))
        process.kill()
        process.wait(timeout=10)

        async def down() -> None:
            limiter = Limiter.redis(url, timeout_s=0.2)
            try:
                with pytest.raises(LimiterUnavailableError):
                    await limiter.hit(LOGIN, "shared")
            finally:
                await limiter.aclose()

        asyncio.run(down())


def test_past_its_budget_a_hash_is_refused_at_once_not_queued() -> None:
    async def run() -> list[str | BaseException]:
        passwords = Passwords(check_slots=1, check_queue=1, hash_slots=1, hash_queue=1)
        results = await asyncio.gather(
            *(passwords.hash("correct horse") for _ in range(4)), return_exceptions=True
        )
        # Logins have their own budget: a check still runs while registrations are refused.
        assert await passwords.check(None, "whatever") is False
        return results

    results = asyncio.run(run())
    assert sum(isinstance(r, str) for r in results) == 2  # one hashing, one waiting
    assert sum(isinstance(r, HashingBusyError) for r in results) == 2


PROXIES = (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"))


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),  # not a proxy: header ignored
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["1.1.1.1, 198.51.100.1"], "198.51.100.1"),  # the left is the client's
        ("127.0.0.1", ["1.1.1.1", "198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # two proxies
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.1"], "127.0.0.1"),  # only proxies: the peer
        ("127.0.0.1", ["not-an-address"], "127.0.0.1"),
        ("127.0.0.1", ["2001:db8::1"], "2001:db8::1"),
    ],
)
def test_the_client_address_comes_from_trusted_proxies_only(
    peer: str, header: list[str], expected: str
) -> None:
    assert client_address(peer, header, PROXIES) == expected
    assert client_address(peer, header, ()) == peer


PRODUCTION = {
    "APP_ENV": "production",
    "DATABASE_URL": "postgresql://app:pw@db.internal:5432/messenger",
    "AUTH_JWT_KEYS": "k1:Tm90LWEtcmVhbC1rZXktYnV0LTMyLWRpc3RpbmN0LWJ5dGVz",
    "METRICS_TOKEN": "9f3c2a7b1e8d4c6f0a5b3e7d",
}


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"AUTH_JWT_KEYS": "k1:" + "A" * 43}, "AUTH_JWT_KEYS"),  # 32 zero bytes
        ({"AUTH_JWT_KEYS": "k1:" + "YWJj" * 11}, "AUTH_JWT_KEYS"),  # "abc" repeated
        ({"METRICS_TOKEN": "a"}, "METRICS_TOKEN"),
        ({"METRICS_TOKEN": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, "METRICS_TOKEN"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, "TRUSTED_PROXIES"),
    ],
)
def test_weak_production_secrets_are_refused_in_one_line(
    changes: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**PRODUCTION, **changes})
    assert caught.value.variable == variable
    assert "\n" not in str(caught.value)
    secret = changes.get(variable, "")
    if len(secret) > 1 and variable != "TRUSTED_PROXIES":
        assert secret not in str(caught.value)


def test_production_turns_openapi_off_unless_asked() -> None:
    assert Settings.from_env(PRODUCTION).auth.openapi_enabled is False
    on = Settings.from_env({**PRODUCTION, "OPENAPI_ENABLED": "true"})
    assert on.auth.openapi_enabled is True
    assert Settings.from_env({}).auth.openapi_enabled is True
    proxies = Settings.from_env({**PRODUCTION, "TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7"})
    assert proxies.limits.trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("192.0.2.7"))


def test_redis_url_without_the_redis_extra_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert str(caught.value) == (
        "REDIS_URL: is set but the redis extra is not installed"
        " (pip install 'messenger-data-service[redis]')"
    )
