"""Rate limits (logins, registrations, chat creation, sends): the `limits` library's sliding
window counter, in Redis when `REDIS_URL` is set, in a bounded in-process store otherwise.

- Redis (`limits.aio.storage.RedisStorage` over redis-py, the `redis` extra): every instance
  and worker counts together; one round trip per check, in Lua on the server. A Redis that
  does not answer raises `LimiterUnavailableError` (the API answers 503, never 500).
- Memory (`BoundedMemoryStorage`): per worker, lost at restart. `limits`' own
  `MemoryStorage` was measured unfit here (docs/security.md, "Rate limits"): each counter
  update schedules a sweep of every key on the event loop, so at 120,000 keys one attempt
  cost 25 ms and stalled the loop up to 124 ms (the fault issue 19 found in the hand-written
  limiter before it). This store implements `limits`' storage interface with O(1) work per
  call: expiry is checked when a key is read, the oldest keys are evicted first (an
  `OrderedDict`), at most two expired keys are dropped per new key, and past `max_keys` the
  oldest key is evicted whatever its age, so memory is bounded (about 200 bytes a key).
  Measured: 10-13 us per attempt with 0, 120k or 300k keys, on the 2-core box under load
  (docs/security.md), most of it `limits`' own wrappers.

`Limiter.hit` counts an attempt; `Limiter.test` tells whether one would be allowed without
counting it (a login counts against the username only after its password was really
checked: `app.api.auth`). Both answer 0 when allowed, else the seconds until the next attempt
may pass (the `Retry-After`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.storage.base import SlidingWindowCounterSupport
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage.base import TimestampedSlidingWindow

DEFAULT_MAX_KEYS = 500_000
"""Keys the in-memory store holds at most (two per counted key and window)."""


class LimiterUnavailableError(Exception):
    """The shared counter store (Redis) did not answer: the request answers 503, not 500."""


@dataclass(frozen=True, slots=True)
class Rate:
    """`amount` attempts per `window_s` seconds for each key of `name`."""

    name: str
    amount: int
    window_s: int

    def item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(self.amount, self.window_s, namespace=self.name)


class BoundedMemoryStorage(Storage, SlidingWindowCounterSupport, TimestampedSlidingWindow):
    """`limits`' storage interface (sliding window counters) in a bounded ordered dict.

    Single-threaded by design (the event loop's): nothing in it awaits, so no lock is needed.
    """

    STORAGE_SCHEME = ["async+bounded-memory"]

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.max_keys: int = int(options.get("max_keys", DEFAULT_MAX_KEYS))
        # key -> [count, expires at (time.time())]; oldest inserted first.
        self._entries: OrderedDict[str, list[float]] = OrderedDict()
        self.evicted = 0
        """Keys dropped before their expiry because the store was full."""

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: str, now: float) -> list[float] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[1] <= now:
            del self._entries[key]
            return None
        return entry

    def _insert(self, key: str, amount: int, expiry: float, now: float) -> None:
        entries = self._entries
        for _ in range(2):  # drop expired keys from the old end, a few per insert
            if not entries:
                break
            oldest = next(iter(entries.values()))
            if oldest[1] > now:
                break
            entries.popitem(last=False)
        if len(entries) >= self.max_keys:
            entries.popitem(last=False)
            self.evicted += 1
        entries[key] = [float(amount), now + expiry]

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        entry = self._live(key, now)
        if entry is None:
            self._insert(key, amount, expiry, now)
            return amount
        entry[0] += amount
        return int(entry[0])

    async def decr(self, key: str, amount: int = 1) -> int:
        entry = self._live(key, time.time())
        if entry is None:
            return 0
        entry[0] = max(0.0, entry[0] - amount)
        return int(entry[0])

    async def get(self, key: str) -> int:
        entry = self._live(key, time.time())
        return 0 if entry is None else int(entry[0])

    async def get_expiry(self, key: str) -> float:
        now = time.time()
        entry = self._live(key, now)
        return now if entry is None else entry[1]

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        count = len(self._entries)
        self._entries.clear()
        return count

    async def clear(self, key: str) -> None:
        self._entries.pop(key, None)

    def _window(self, key: str, expiry: int, now: float) -> tuple[str, int, float, int, float]:
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        previous = self._live(previous_key, now)
        current = self._live(current_key, now)
        previous_count = 0 if previous is None else int(previous[0])
        current_count = 0 if current is None else int(current[0])
        previous_ttl = 0.0 if not previous_count else (1 - ((now - expiry) / expiry) % 1) * expiry
        current_ttl = (1 - (now / expiry) % 1) * expiry + expiry
        return current_key, previous_count, previous_ttl, current_count, current_ttl

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        if amount > limit:
            return False
        now = time.time()
        current_key, previous_count, previous_ttl, current_count, _ = self._window(key, expiry, now)
        if math.floor(previous_count * previous_ttl / expiry + current_count) + amount > limit:
            return False
        await self.incr(current_key, 2 * expiry, amount)
        return True

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        _, previous_count, previous_ttl, current_count, current_ttl = self._window(
            key, expiry, time.time()
        )
        return previous_count, previous_ttl, current_count, current_ttl

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        previous_key, current_key = self.sliding_window_keys(key, expiry, time.time())
        self._entries.pop(previous_key, None)
        self._entries.pop(current_key, None)


class Limiter:
    """Sliding window counters over a `limits` storage (Redis, or `BoundedMemoryStorage`)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._items: dict[Rate, RateLimitItem] = {}

    @classmethod
    def in_memory(cls, max_keys: int = DEFAULT_MAX_KEYS) -> Limiter:
        return cls(BoundedMemoryStorage(max_keys=max_keys))

    @classmethod
    def redis(cls, url: str, timeout_s: float = 0.5) -> Limiter:
        """Counters in Redis at `url` (`redis://`, `rediss://` or `unix://`)."""
        from limits.aio.storage import RedisStorage  # needs the `redis` extra

        uri = "async+redis+unix" + url.removeprefix("unix") if url.startswith("unix") else url
        if not uri.startswith("async+"):
            uri = "async+" + uri
        storage = RedisStorage(
            uri,
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix="messenger",
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
        )
        return cls(storage)

    def _item(self, rate: Rate) -> RateLimitItem:
        item = self._items.get(rate)
        if item is None:
            item = self._items[rate] = rate.item()
        return item

    async def hit(self, rate: Rate, key: str) -> int:
        """Count an attempt on `key`; 0 when allowed, else the seconds to wait (it is not
        counted then)."""
        item = self._item(rate)
        try:
            if await self._strategy.hit(item, key):
                return 0
            return await self._wait(item, key)
        except StorageError as error:
            raise LimiterUnavailableError(type(error.storage_error).__name__) from None

    async def test(self, rate: Rate, key: str) -> int:
        """Whether an attempt on `key` would be allowed (0), without counting it."""
        item = self._item(rate)
        try:
            if await self._strategy.test(item, key):
                return 0
            return await self._wait(item, key)
        except StorageError as error:
            raise LimiterUnavailableError(type(error.storage_error).__name__) from None

    async def _wait(self, item: RateLimitItem, key: str) -> int:
        stats = await self._strategy.get_window_stats(item, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def aclose(self) -> None:
        """Close Redis's connections, if any."""
        bridge = getattr(self.storage, "bridge", None)
        storage = getattr(bridge, "storage", None)
        if storage is not None:
            await storage.aclose()
