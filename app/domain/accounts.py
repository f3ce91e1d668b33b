"""Accounts: credentials and refresh-token families. Everything here runs on the primary:
a login right after registering, or a refresh right after a login, must not be judged by a
replica that has not replayed them yet (the caller has no consistency token for them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.db.connection import Connection, Query, Scalar
from app.db.session import DbSession

_CREDENTIALS = Query(
    "SELECT id, password_hash FROM users WHERE username = $1",
    lambda user_id, password_hash: (
        int(user_id),
        password_hash if password_hash is None else str(password_hash),
    ),
)
_SET_PASSWORD = Scalar("UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING true", bool)
# The operator's password change also revokes every refresh token of the user: whoever
# held the old password (or a token got with it) has to log in again.
_SET_PASSWORD_BY_NAME = Scalar(
    "WITH u AS ("
    "  UPDATE users SET password_hash = $2 WHERE username = $1 RETURNING id"
    "), revoked AS ("
    "  UPDATE refresh_tokens SET revoked_at = now()"
    "  WHERE user_id IN (SELECT id FROM u) AND revoked_at IS NULL RETURNING 1"
    ") SELECT EXISTS (SELECT 1 FROM u)",
    bool,
)
_REVOKE_USER = Scalar(
    "WITH revoked AS ("
    "  UPDATE refresh_tokens SET revoked_at = now()"
    "  WHERE user_id = $1 AND revoked_at IS NULL AND used_at IS NULL AND expires_at > now()"
    "  RETURNING 1"
    ") SELECT count(*)::int FROM revoked",
    int,
)
# $1 family, $2 user, $3 token hash, $4 lifetime in seconds.
_ISSUE = Scalar(
    "INSERT INTO refresh_tokens (family, user_id, token_hash, expires_at)"
    " VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING true",
    bool,
)
# Spend a live token and mint its successor in the same family, atomically. Two concurrent
# uses of one token: the second waits on the row lock, then finds it spent. The successor
# expires after the lifetime, but never later than the family's first token (the login) plus
# the absolute cap, so a family cannot be renewed forever. $1 spent hash, $2 new hash,
# $3 lifetime, $4 cap.
_ROTATE = Query(
    "WITH spent AS ("
    "  UPDATE refresh_tokens SET used_at = now()"
    "  WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
    "  AND (SELECT min(created_at) FROM refresh_tokens t WHERE t.family = refresh_tokens.family)"
    "    + make_interval(secs => $4) > now()"
    "  RETURNING family, user_id"
    "), fresh AS ("
    "  INSERT INTO refresh_tokens (family, user_id, token_hash, expires_at)"
    "  SELECT family, user_id, $2, LEAST("
    "    now() + make_interval(secs => $3),"
    "    (SELECT min(created_at) FROM refresh_tokens t WHERE t.family = spent.family)"
    "      + make_interval(secs => $4)"
    "  ) FROM spent"
    "  RETURNING user_id"
    ") SELECT user_id FROM fresh",
    int,
)
# A spent token presented again: revoke its whole family (the thief's and the owner's).
_REVOKE_IF_REUSED = Scalar(
    "WITH family AS ("
    "  SELECT family FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL"
    "), revoked AS ("
    "  UPDATE refresh_tokens SET revoked_at = now()"
    "  WHERE family IN (SELECT family FROM family) AND revoked_at IS NULL RETURNING 1"
    ") SELECT EXISTS (SELECT 1 FROM family)",
    bool,
)
_REVOKE_FAMILY = Scalar(
    "WITH family AS (SELECT family FROM refresh_tokens WHERE token_hash = $1),"
    " revoked AS ("
    "  UPDATE refresh_tokens SET revoked_at = now()"
    "  WHERE family IN (SELECT family FROM family) AND revoked_at IS NULL RETURNING 1"
    ") SELECT count(*)::int FROM revoked",
    int,
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a login checks: the user's id and stored hash (None: no password yet)."""

    user_id: int
    password_hash: str | None


class RefreshTokenReusedError(Exception):
    """A spent refresh token was presented again: its family is now revoked."""


class AccountRepository:
    """Credentials and refresh tokens, on the primary."""

    __slots__ = ("_db",)

    def __init__(self, db: DbSession) -> None:
        self._db = db

    async def credentials(self, username: str) -> Credentials | None:
        """The user's id and password hash, or None for an unknown username."""

        async def fetch(conn: Connection) -> tuple[int, str | None] | None:
            return await conn.fetch_one(_CREDENTIALS, username)

        found = await self._db.read(fetch, on_primary=True)
        return Credentials(*found) if found is not None else None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Store a new hash (a rehash at login with the current parameters)."""

        async def update(conn: Connection) -> bool:
            return await conn.fetch_scalar(_SET_PASSWORD, user_id, password_hash)

        await self._db.write(update, idempotent=True)

    async def set_password_of(self, username: str, password_hash: str) -> bool:
        """Set the hash of `username` (the operator's command); False when unknown."""

        async def update(conn: Connection) -> bool:
            return await conn.fetch_scalar(_SET_PASSWORD_BY_NAME, username, password_hash)

        return bool(await self._db.write(update, idempotent=True))

    async def start_family(self, user_id: int, token_hash: bytes, ttl_s: float) -> None:
        """The first refresh token of a login."""
        family = uuid.uuid4()

        async def insert(conn: Connection) -> bool:
            return await conn.fetch_scalar(_ISSUE, family, user_id, token_hash, ttl_s)

        await self._db.write(insert)

    async def rotate(
        self, spent_hash: bytes, fresh_hash: bytes, ttl_s: float, max_lifetime_s: float
    ) -> int | None:
        """Spend a refresh token for a new one of its family; the user's id, or None when
        the token is unknown, expired or revoked, or its family older than `max_lifetime_s`.
        `RefreshTokenReusedError` when it was spent before (its family is revoked)."""

        async def rotate(conn: Connection) -> int | None:
            return await conn.fetch_one(_ROTATE, spent_hash, fresh_hash, ttl_s, max_lifetime_s)

        user_id = await self._db.write(rotate)
        if user_id is not None:
            return user_id

        async def revoke(conn: Connection) -> bool:
            return await conn.fetch_scalar(_REVOKE_IF_REUSED, spent_hash)

        if await self._db.write(revoke, idempotent=True):
            raise RefreshTokenReusedError("a spent refresh token was used again")
        return None

    async def end_all_families(self, user_id: int) -> int:
        """Revoke every live refresh token of `user_id` (log out everywhere); how many."""

        async def revoke(conn: Connection) -> int:
            return await conn.fetch_scalar(_REVOKE_USER, user_id)

        return await self._db.write(revoke, idempotent=True)

    async def end_family(self, token_hash: bytes) -> int:
        """Revoke every token of the token's family (logout); how many were live."""

        async def revoke(conn: Connection) -> int:
            return await conn.fetch_scalar(_REVOKE_FAMILY, token_hash)

        return await self._db.write(revoke, idempotent=True)
