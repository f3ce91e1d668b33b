"""A bounded memory of access tokens this worker has already verified, so a client that sends
the same token on every request pays for its signature once.

Verifying an HS256 token with PyJWT (header, base64, JSON, HMAC, claims) costs 35-70 µs on the
2-core box, the largest single step of a request after the statements; a client keeps its
access token for its whole lifetime (15 minutes by default), so nearly every request repeats
one. An entry is the token's whole text (not a hash of it: two different tokens never share
an entry) with what its check produced (the caller and the claims) and its `exp`:

- a hit is valid only while `exp` is in the future: an expired token is verified again, and
  refused, exactly as before;
- only tokens that verified are remembered; a malformed or forged token costs a full check
  every time, as before, and never takes a place;
- the memory belongs to one key ring: the middleware that owns it is built with the ring, so
  a ring changed at a restart starts an empty memory;
- at most `capacity` entries: when full, expired entries are dropped, and if that frees less
  than a quarter, the oldest quarter goes (insertion order), so each insertion costs O(1)
  amortised and memory stays bounded (~0.5 KB an entry).

Access tokens are not revocable before `exp` by design (no database call per request); this
memory does not change that.
"""

from __future__ import annotations

import time
from itertools import islice
from typing import Generic, TypeVar

DEFAULT_CAPACITY = 10_000
V = TypeVar("V")


class VerifiedTokens(Generic[V]):
    """Token text -> (what its check produced, exp) for tokens that passed the full check."""

    __slots__ = ("_capacity", "_entries")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 4:
            raise ValueError("capacity must be at least 4")
        self._capacity = capacity
        self._entries: dict[str, tuple[V, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> V | None:
        """What `token`'s check produced, while it has not expired; otherwise None."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at <= time.time():
            del self._entries[token]
            return None
        return value

    def remember(self, token: str, value: V, expires_at: float) -> None:
        """Keep what `token`'s check produced until `expires_at` (its `exp`, Unix time)."""
        if len(self._entries) >= self._capacity:
            self._make_room()
        self._entries[token] = (value, expires_at)

    def _make_room(self) -> None:
        now = time.time()
        entries = self._entries
        for token in [token for token, (_, exp) in entries.items() if exp <= now]:
            del entries[token]
        if len(entries) > self._capacity * 3 // 4:
            for token in list(islice(entries, self._capacity // 4)):
                del entries[token]
