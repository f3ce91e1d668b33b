"""Access tokens (short-lived JWTs verified without a database call) and refresh tokens
(opaque, stored only as a hash).

Access tokens are HS256 JWTs signed with the first key of `AUTH_JWT_KEYS` and carry its key
id (`kid`) in the header; any key still listed verifies, so a key is rotated by putting a new
one first, and dropped once the longest access token signed with the old one has expired
(`AUTH_ACCESS_TOKEN_TTL_S`). HS256 because only this service issues and verifies them: one
shared secret, and a check costs microseconds (an asymmetric key would let other services
verify without the secret, at many times the cost per request).

Verification is Litestar's (`litestar.security.jwt`): `KeyRingToken` only chooses the key by
`kid` and pins the algorithm, so `alg: none`, another algorithm, an unknown `kid`, a wrong
signature or an expired token are all refused there.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import jwt
from litestar.security.jwt import Token

ALGORITHM = "HS256"
ISSUER = "messenger"
REFRESH_TOKEN_BYTES = 32


class KeyRingToken(Token):
    """A Litestar JWT whose verification key is chosen by the token's `kid` header.

    Subclassed per application by `token_class`, which binds the key ring.
    """

    keys: ClassVar[Mapping[str, bytes]] = {}

    @classmethod
    def decode_payload(  # noqa: PLR0917 - Litestar's signature, overridden
        cls,
        encoded_token: str,
        secret: str,
        algorithms: list[str],
        issuer: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        options: Any = None,
    ) -> Any:
        key = cls.keys.get(str(jwt.get_unverified_header(encoded_token).get("kid")))
        if key is None:
            raise jwt.InvalidTokenError("unknown key id")
        checks: Any = {**(options or {}), "require": ["exp", "iat", "sub", "iss"]}
        return jwt.decode(
            encoded_token, key=key, algorithms=[ALGORITHM], issuer=ISSUER, options=checks
        )


def token_class(keys: Mapping[str, bytes]) -> type[KeyRingToken]:
    """A `KeyRingToken` bound to `keys` (key id -> secret)."""
    return type("MessengerToken", (KeyRingToken,), {"keys": dict(keys)})


class AccessTokens:
    """Issues access tokens with the active key of the ring."""

    def __init__(self, keys: Mapping[str, bytes], active: str, ttl_s: float) -> None:
        self._key = keys[active]
        self._kid = active
        self.ttl_s = ttl_s

    def issue(self, user_id: int, now: datetime | None = None) -> str:
        """A signed access token for `user_id`, valid for `ttl_s`."""
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "iss": ISSUER,
            "iat": issued,
            "exp": issued + timedelta(seconds=self.ttl_s),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})


def new_refresh_token() -> tuple[str, bytes]:
    """A new opaque refresh token and the hash that is stored instead of it."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    return token, refresh_token_hash(token)


def refresh_token_hash(token: str) -> bytes:
    """What is stored for a refresh token: SHA-256 (the token has 256 random bits, so a fast
    hash is enough; a database dump gives nothing to replay)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
