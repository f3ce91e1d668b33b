"""The bearer check every protected route passes: the access token's signature and claims,
then the caller it names, set on the request (`request.user`) without a database call.

Litestar's `JWTAuthenticationMiddleware` does the same check with more steps per request:
it builds an `ASGIConnection`, has PyJWT verify the token, then converts the verified claims
into its `Token` dataclass (datetimes, a msgspec conversion, `exp` and `iat` checked a second
time against the clock) and hands that to a `retrieve_user_handler` coroutine. The
benchmark's profile charged those steps 58-84 µs of a request the baseline, which runs the
same PyJWT call, does not pay (docs/performance.md). This subclass keeps everything the
middleware is configured with by `JWTAuth` (its exclusions, the OpenAPI security scheme,
the key ring of `app.security.tokens`) and replaces only the per-request path: the header
from the raw scope, one PyJWT call, and the `Caller` from the subject.

What is refused is unchanged: no `Authorization` header, another scheme, a malformed token,
`alg` other than HS256 (`none` included), an unknown `kid`, a wrong signature, a missing or
expired `exp`, an `iat` in the future, another issuer, a subject that is not a user id. Each
answers 401 with an RFC 6750 challenge (`app.api.problems`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import JWTAuthenticationMiddleware
from litestar.types import Receive, Scope, Send

from app.compat.litestar import auth_bypassed
from app.security.tokens import KeyRingToken
from app.security.verified_tokens import VerifiedTokens

_MAX_USER_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request, from the access token alone (no database call)."""

    id: int


class BearerAuthenticationMiddleware(JWTAuthenticationMiddleware):
    """Sets `scope["user"]` to the `Caller` and `scope["auth"]` to the verified claims.

    Given to `JWTAuth` as its `authentication_middleware_class`, so Litestar constructs it
    with the exclusions and the token class of the application's `JWTAuth`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        token_cls = self.token_cls
        if not issubclass(token_cls, KeyRingToken):
            raise TypeError("the bearer check needs the key ring's token class")
        self._decode = token_cls.decode_payload
        self._algorithms = [self.algorithm]
        # Bound to this middleware's key ring: a new ring (a restart) starts empty.
        self._remembered: VerifiedTokens[tuple[Caller, dict[str, Any]]] = VerifiedTokens()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not auth_bypassed(self, scope):  # Litestar's own rules (app.compat.litestar)
            scope["user"], scope["auth"] = self._verified(scope)
        await self.app(scope, receive, send)

    def _verified(self, scope: Scope) -> tuple[Caller, dict[str, Any]]:
        """The caller and the claims of the request's token: remembered from an earlier
        full check of the same token while it has not expired
        (`app.security.verified_tokens`), else checked in full and remembered."""
        token = _bearer_token(scope)
        verified = self._remembered.get(token)
        if verified is not None:
            return verified
        try:
            claims: dict[str, Any] = self._decode(token, secret="", algorithms=self._algorithms)
        except (jwt.InvalidTokenError, ValueError):
            raise NotAuthorizedException("Invalid token") from None
        verified = (_caller(claims), claims)
        self._remembered.remember(token, verified, float(claims["exp"]))
        return verified


def _bearer_token(scope: Scope) -> str:
    """The token of the request's first `Authorization: Bearer <token>` header."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthorizedException("Invalid token")
            return token.strip()
    raise NotAuthorizedException("No JWT token found in request header")


def _caller(claims: dict[str, Any]) -> Caller:
    """The caller named by the verified claims' subject, a user id in the database's range."""
    subject = claims["sub"]
    if isinstance(subject, str) and subject.isascii() and subject.isdigit():
        user_id = int(subject)
        if 0 < user_id <= _MAX_USER_ID:
            return Caller(user_id)
    raise NotAuthorizedException("Invalid token")
