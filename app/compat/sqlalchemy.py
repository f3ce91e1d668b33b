"""SQLAlchemy internals: the idle reaper's access to QueuePool's queue.

Written for SQLAlchemy 2.1 (`WRITTEN_FOR`; 2.1.9 installed when written).

QueuePool has no idle timeout: it keeps `pool_size` connections forever, or with
`max_overflow` closes a surplus connection the instant it is returned, which churned
connections under bursty load. `app.db.idle` trims idle connections above the minimum instead,
which needs the queue behind the pool (`QueuePool._pool`, an `AsyncAdaptedQueue` whose
`_queue` is an `asyncio.LifoQueue` whose `_queue` is a list, least recently returned first)
and the bookkeeping QueuePool does when it discards a connection (`_dec_overflow`). There is
no public way to close an idle connection of a QueuePool.

`app.db.pool` also returns a connection by calling the checkout's `close()` directly, not
through `greenlet_spawn` as SQLAlchemy's asyncio layer does: with no reset on return
(`pool_reset_on_return=None`, `app.db.engine`) and an unusable connection invalidated
before, the return does no I/O, so it needs no greenlet (greenlet_spawn cost ~15 µs per call
in a microbenchmark under uvloop). The call stays inline there (the hot path); the test
checks that such a return still works outside a greenlet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.pool import QueuePool

WRITTEN_FOR = ("sqlalchemy", "2.1", "2.2")
"""The distribution, and the range [from, below) of versions this module was written for."""


def idle_stack(pool: QueuePool) -> list[Any] | None:
    """The list behind the pool's LIFO queue of idle connection records, least recently
    returned first; None when the pool is not laid out as expected (the reaper then turns
    itself off)."""
    queue = getattr(getattr(pool, "_pool", None), "_queue", None)
    items = getattr(queue, "_queue", None)
    return items if isinstance(items, list) else None


def forget_discarded(pool: QueuePool) -> None:
    """Account for a connection record taken out of the queue and closed, as QueuePool does
    when it discards one itself (its count of connections drops by one)."""
    pool._dec_overflow()
