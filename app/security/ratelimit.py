"""Login attempt limits per username and per client address: a fixed window per key.

In Redis when `REDIS_URL` is set, so that every instance and worker counts together (one
`INCR` and `EXPIRE NX` in a pipeline per key: a round trip per login, nothing per other
request); in the process's memory otherwise (then the limit is per worker). A key over its
limit answers how long until its window ends, which the API sends as `Retry-After`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

_MEMORY_KEYS_MAX = 100_000  # past this, expired windows are swept before counting


class LimiterUnavailableError(Exception):
    """The shared counter store (Redis) did not answer: logins answer 503, not 500."""


class Limiter(Protocol):
    """Counts an attempt for each key; returns seconds to wait, or 0 when allowed."""

    async def hit(self, keys: Sequence[tuple[str, int]]) -> int:
        """Count one attempt on each `(key, limit)`; the longest wait among those over."""
        ...

    async def aclose(self) -> None:
        """Release the connection, if any."""
        ...


class MemoryLimiter:
    """Fixed windows in a dict: per process, lost at restart."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._windows: dict[str, tuple[float, int]] = {}

    async def hit(self, keys: Sequence[tuple[str, int]]) -> int:
        now = time.monotonic()
        if len(self._windows) > _MEMORY_KEYS_MAX:
            self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        wait = 0
        for key, limit in keys:
            ends, count = self._windows.get(key, (0.0, 0))
            if ends <= now:
                ends, count = now + self._window_s, 0
            count += 1
            self._windows[key] = (ends, count)
            if count > limit:
                wait = max(wait, math.ceil(ends - now))
        return wait

    async def aclose(self) -> None:
        return None


class RedisLimiter:
    """Fixed windows in Redis, shared by every instance."""

    def __init__(self, url: str, window_s: float, timeout_s: float = 0.5) -> None:
        import redis.asyncio as redis_asyncio  # only when REDIS_URL is set

        self._client: Any = redis_asyncio.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        self._window_s = max(1, math.ceil(window_s))

    async def hit(self, keys: Sequence[tuple[str, int]]) -> int:
        pipe = self._client.pipeline(transaction=False)
        for key, _ in keys:
            pipe.incr(key)
            pipe.expire(key, self._window_s, nx=True)
            pipe.ttl(key)
        try:
            replies = await pipe.execute()
        except Exception as error:
            raise LimiterUnavailableError(type(error).__name__) from None
        wait = 0
        for index, (_, limit) in enumerate(keys):
            count, ttl = int(replies[3 * index]), int(replies[3 * index + 2])
            if count > limit:
                wait = max(wait, ttl if ttl > 0 else self._window_s)
        return wait

    async def aclose(self) -> None:
        await self._client.aclose()
