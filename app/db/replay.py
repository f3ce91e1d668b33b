"""Read-your-writes on the replicas: has this replica replayed the client's token yet?

The monitor learns each replica's replay position once per interval, so right after a write
every replica looks behind the write's token. Rather than sending such reads to the primary,
the read asks the replica it would use, on the connection it will read on, and reads there
when the replica has replayed the token (a local standby replays within milliseconds). While
it has not, the read waits a bounded few milliseconds (`DB_TOKEN_WAIT_MS`), asking again
every `POLL_S`, and only then goes to the primary. Every answer also teaches the replica set
the replica's position, so the next reads with older tokens skip the question. A replica
that did not replay a token within the wait is not asked again for one monitor interval
(`ReplicaView.slow_until`, set through the cluster state): a paused or far-behind replica
must not cost every token read a wait before it goes to the primary anyway.
"""

from __future__ import annotations

import asyncio

from app.db.connection import Connection, Scalar

POLL_S = 0.002
# A token this far past a replica cannot be replayed within a few milliseconds: no wait.
WAIT_SKIP_BYTES = 16 * 1024 * 1024
# Only a standby that streams from a primary answers with its position: one that replays
# nothing new (an old primary restarted as a standby before its rewind, cut off from the
# cluster) may hold WAL of another timeline at positions past a new primary's token, and would
# pass it without the write. Behind HAProxy the monitor's probes and a read's connection can
# land on different members, so the check is made on the read's own connection.
# `pg_stat_wal_receiver` has a row while a WAL receiver runs, whatever the role may see of it.
REPLAY_POSITION: Scalar[int] = Scalar(
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver)"
    " THEN pg_last_wal_replay_lsn() END",
    lambda value: value or 0,
)


async def replay_position(
    conn: Connection, token: int, *, wait_s: float, known_primary: int
) -> int:
    """The replay position of the replica behind `conn`: at or past `token` as soon as it
    gets there, waiting up to `wait_s` for it when the token is plausibly close (the primary
    is known to have reached it, or it is within `WAIT_SKIP_BYTES` of the replica); below
    `token` when it did not. The caller reports the position to the cluster state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        position: int = await conn.fetch_scalar(REPLAY_POSITION)
        if position >= token:
            return position
        plausible = token <= known_primary or token - position <= WAIT_SKIP_BYTES
        if not plausible or loop.time() + POLL_S > deadline:
            return position
        await asyncio.sleep(POLL_S)
