"""Closes idle connections above a pool's minimum once they sat unused for the idle timeout.

SQLAlchemy's QueuePool has no idle timeout: it keeps up to `pool_size` connections forever,
and with `max_overflow` it closes a surplus connection the instant it is returned, which
churns connections under bursty load. We keep up to the maximum (`pool_size`) and trim here.

The pool reuses connections LIFO, so the least recently used idle ones sit at the bottom of
its queue; this reaper removes those (no await in between, so no checkout can interleave),
accounts for them as SQLAlchemy does when it discards a connection, and closes them. That
reaches into QueuePool's queue, which SQLAlchemy does not expose: the access is confined to
`app.compat.sqlalchemy`, checked at start, and the reaper disables itself (logging once) if
the structure is not what it expects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from app.compat.sqlalchemy import forget_discarded, idle_stack
from app.db.engine import CHECKED_IN_AT
from app.process.periodic import Periodic

log = structlog.get_logger("app.db.pool")


async def reap_idle(pool: QueuePool, *, min_size: int, idle_timeout_s: float, name: str) -> int:
    """Close connections idle for `idle_timeout_s` while more than `min_size` exist."""
    stack = idle_stack(pool)
    if stack is None:
        return 0
    now = time.monotonic()
    victims: list[Any] = []
    total = pool.checkedin() + pool.checkedout()
    while stack and total - len(victims) > min_size:
        checked_in_at = stack[0].info.get(CHECKED_IN_AT, now)
        if now - checked_in_at < idle_timeout_s:
            break
        victims.append(stack.pop(0))
    for record in victims:
        try:
            # Shielded: stopping the reaper must not leave a half-closed connection behind.
            await asyncio.shield(greenlet_spawn(record.close))
        except Exception as error:
            log.warning("closing an idle connection failed", pool=name, error=type(error).__name__)
        finally:
            forget_discarded(pool)  # what QueuePool does when it discards a connection
    if victims:
        log.debug("idle connections closed", pool=name, closed=len(victims))
    return len(victims)


class IdleReaper:
    """Trims each pool back towards its minimum, every half idle timeout (5 s at most)."""

    def __init__(
        self, pools: Callable[[], list[tuple[str, QueuePool, int]]], idle_timeout_s: float
    ) -> None:
        self._pools = pools
        self._idle_timeout_s = idle_timeout_s
        interval = min(max(idle_timeout_s / 2, 0.05), 5.0)
        self.periodic = Periodic("idle-reaper", interval, self.reap_all)
        """Runs `reap_all`; started by the data layer when `enabled`."""

    @property
    def enabled(self) -> bool:
        """False when the idle timeout is 0, or (logged) when the pool layout is unknown."""
        if self._idle_timeout_s <= 0:
            return False
        if any(idle_stack(pool) is None for _, pool, _ in self._pools()):
            log.warning("idle timeout disabled: unexpected SQLAlchemy pool layout")
            return False
        return True

    async def reap_all(self) -> None:
        """One pass over every pool."""
        for name, pool, min_size in self._pools():
            await reap_idle(pool, min_size=min_size, idle_timeout_s=self._idle_timeout_s, name=name)
