"""The memory of verified access tokens: a hit only before `exp`, bounded, oldest out first."""

from __future__ import annotations

import time

import pytest

from app.security.verified_tokens import VerifiedTokens


def test_a_remembered_token_is_returned_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    memory: VerifiedTokens[str] = VerifiedTokens()
    memory.remember("token-a", "alice", expires_at=1_010.0)
    assert memory.get("token-a") == "alice"
    assert memory.get("token-b") is None
    now[0] = 1_009.999
    assert memory.get("token-a") == "alice"
    now[0] = 1_010.0  # `exp` itself is already too late, as PyJWT decides
    assert memory.get("token-a") is None
    assert len(memory) == 0  # an expired entry leaves at once


def test_the_memory_is_bounded_and_drops_expired_entries_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    memory: VerifiedTokens[int] = VerifiedTokens(capacity=8)
    for n in range(4):
        memory.remember(f"short-{n}", n, expires_at=10.0)
    for n in range(4):
        memory.remember(f"long-{n}", n, expires_at=100.0)
    now[0] = 50.0  # the four short ones have expired: making room drops only them
    memory.remember("new", 99, expires_at=100.0)
    assert len(memory) == 5
    assert all(memory.get(f"long-{n}") == n for n in range(4))


def test_a_full_memory_of_live_tokens_drops_the_oldest_quarter() -> None:
    far = time.time() + 3600
    memory: VerifiedTokens[int] = VerifiedTokens(capacity=8)
    for n in range(8):
        memory.remember(f"t{n}", n, expires_at=far)
    memory.remember("t8", 8, expires_at=far)
    assert len(memory) == 7
    assert memory.get("t0") is None
    assert memory.get("t1") is None
    assert [memory.get(f"t{n}") for n in range(2, 9)] == list(range(2, 9))
    for n in range(9, 1_000):  # never beyond the capacity, however many arrive
        memory.remember(f"t{n}", n, expires_at=far)
        assert len(memory) <= 8


def test_a_capacity_below_four_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        VerifiedTokens(capacity=3)
