"""Authentication: `/auth/token`, `/auth/refresh`, `/auth/logout`, and the bearer check every
other `/users` and `/chats` route passes through.

- `POST /auth/token {username, password}` answers an access token (a short-lived JWT, checked
  without a database call by `app.api.bearer` under Litestar's `JWTAuth`, with the key ring
  of `app.security.tokens`)
  and a refresh token (opaque, single use, stored as a hash). Logins are limited per
  client address (every attempt counts) and per username (only attempts whose password was
  really checked and was wrong count, so refused attempts cannot lock an account), in
  `app.security.ratelimit`: 429 with `Retry-After`. The client address is the peer's, or the
  one a trusted proxy forwards (`app.security.clientaddr`). A wrong username and a wrong
  password answer the same 401 after the same work (the check runs against a dummy hash for
  an unknown user). A hash made with older parameters is replaced on a successful login.
- `POST /auth/refresh {refresh_token}` spends the refresh token for a new pair; a token
  presented twice revokes its whole family (the thief and the owner both have to log in
  again); a family ends `AUTH_REFRESH_TOKEN_MAX_LIFETIME_S` after its login, however often
  it was rotated. `POST /auth/logout {refresh_token}` revokes the family; 204 whatever it
  was. `POST /auth/logout-all` (with an access token) revokes every family of the caller.
- Credentials and refresh tokens are read and written on the primary (`AccountRepository`),
  so a login right after registering never fails on a replica that has not replayed it.
"""

from __future__ import annotations

import math
import secrets
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, TooManyRequestsException
from litestar.middleware import DefineMiddleware
from litestar.openapi.spec import SecurityRequirement
from litestar.params import JSONBody
from litestar.security.jwt import JWTAuth, Token
from litestar.types import ASGIApp, Receive, Scope, Send

from app.api.bearer import BearerAuthenticationMiddleware, Caller
from app.api.controller import ApiController
from app.api.problems import problem_responses
from app.api.schemas import Password, Username
from app.config import AbuseLimits, AuthSettings
from app.domain.accounts import AccountRepository, RefreshTokenReusedError
from app.security.clientaddr import client_address
from app.security.passwords import HashingBusyError, Passwords
from app.security.ratelimit import Limiter, Rate
from app.security.tokens import (
    AccessTokens,
    new_refresh_token,
    refresh_token_hash,
    token_class,
)

REALM = "messenger"
# Paths the bearer check leaves alone: probes and operator endpoints (guarded on their own),
# the OpenAPI document, and the token endpoints themselves. Registration opts out per route.
PUBLIC_PATHS = ["^/health", "^/metrics", "^/schema", "^/auth/(?!logout-all)"]
NO_TOKEN: list[SecurityRequirement] = [{}]
"""The OpenAPI `security` of a route that takes no access token: an empty requirement is
"no authentication". An empty list would not do: Litestar leaves it out, and the bearer
requirement `JWTAuth` puts on the whole document would then apply to the route."""
RefreshToken = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

log = structlog.get_logger("app.api.auth")


class Login(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /auth/token` body."""

    username: Username
    password: Password


class Refresh(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`POST /auth/refresh` and `POST /auth/logout` body."""

    refresh_token: RefreshToken


class TokenPair(msgspec.Struct, frozen=True):
    """A new access token and the refresh token to get the next one."""

    access_token: str
    expires_in: int
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme's name, not a secret


class Authentication:
    """What the auth routes share for the process's life: hashing, signing, limits.

    A lifecycle component only to close the limiter's Redis connection.
    """

    name = "authentication"

    def __init__(
        self,
        settings: AuthSettings,
        redis_url: str | None,
        limits: AbuseLimits | None = None,
    ) -> None:
        keys = dict(settings.jwt_keys)
        limits = limits or AbuseLimits()
        self.settings = settings
        self.limits = limits
        self.passwords = Passwords(
            check_queue=limits.login_hash_queue, hash_queue=limits.register_hash_queue
        )
        self.registrations_at_once = 1 + limits.register_hash_queue
        self.registrations_in_flight = 0
        self.access = AccessTokens(keys, settings.signing_kid, settings.access_token_ttl_s)
        self.limiter = (
            Limiter.redis(redis_url) if redis_url else Limiter.in_memory(limits.memory_max_keys)
        )
        window = max(1, math.ceil(settings.login_window_s))
        self.login_per_address = Rate("login-addr", settings.login_limit_per_address, window)
        self.login_per_username = Rate("login-user", settings.login_limit_per_username, window)
        self.register_per_address = Rate(
            "register-addr", limits.register_limit_per_address, limits.register_window_s
        )
        self.register_global = Rate(
            "register-all", limits.register_limit_global, limits.register_window_s
        )
        self.chat_create = Rate("chat-create", limits.chat_create_limit, limits.user_window_s)
        self.send = Rate("send", limits.send_limit, limits.user_window_s)
        self.jwt = JWTAuth[Caller](
            token_secret=keys[settings.signing_kid].hex(),  # unused: the ring picks the key
            retrieve_user_handler=_unused_user_handler,
            authentication_middleware_class=BearerAuthenticationMiddleware,
            token_cls=token_class(keys),
            exclude=PUBLIC_PATHS,
            # Litestar leaves HEAD out by default: a HEAD of a `GET` route would then answer
            # without a token (and 500 where the route needs the caller). OPTIONS only.
            exclude_http_methods=["OPTIONS"],
            openapi_security_scheme_name="BearerToken",
            description="An access token from POST /auth/token",
        )

    async def start(self) -> None:
        """Nothing to open: Redis connects on the first login."""

    async def stop(self) -> None:
        """Close the limiter's connection."""
        await self.limiter.aclose()

    async def issue(self, accounts: AccountRepository, user_id: int) -> TokenPair:
        """A new access token, and the first refresh token of a new family."""
        refresh, refresh_hash = new_refresh_token()
        await accounts.start_family(user_id, refresh_hash, self.settings.refresh_token_ttl_s)
        return self.pair(user_id, refresh)

    def client(self, request: Request[Any, Any, Any]) -> str:
        """The client's address, from a trusted proxy's `X-Forwarded-For` if any."""
        return self.client_of(request.scope)

    def client_of(self, scope: Scope) -> str:
        """`client` from the ASGI scope (`X-Forwarded-For` read only from trusted proxies)."""
        peer = scope.get("client")
        proxies = self.limits.trusted_proxies
        forwarded = (
            [value.decode("latin-1") for name, value in scope["headers"] if name == _XFF]
            if proxies
            else []
        )
        return client_address(peer[0] if peer else None, forwarded, proxies)

    async def limit(self, rate: Rate, key: str) -> None:
        """Count an attempt; 429 with `Retry-After` when `key` is over `rate`."""
        wait = await self.limiter.hit(rate, key)
        if wait:
            raise too_many(wait)

    def pair(self, user_id: int, refresh: str) -> TokenPair:
        """An access token for `user_id` alongside `refresh`."""
        return TokenPair(
            access_token=self.access.issue(user_id),
            expires_in=int(self.access.ttl_s),
            refresh_token=refresh,
        )


async def _unused_user_handler(token: Token, _: Any) -> Caller | None:
    """Required by `JWTAuth`, never called: `BearerAuthenticationMiddleware` builds the
    caller from the verified claims itself."""
    raise NotImplementedError


def development_keys() -> tuple[tuple[str, bytes], ...]:
    """A key made up for this process when none is configured outside production: tokens
    then do not survive a restart nor work across workers (`messenger serve` keeps one
    under `.data/` for development instead)."""
    return (("ephemeral", secrets.token_bytes(32)),)


_XFF = b"x-forwarded-for"


class EarlyRefusal:
    """Route middleware of the per-address limited routes (login, registration): an address
    already over its limit is answered 429 here, before the body is read, decoded and
    validated, so a flood from one address costs the worker as little as it can. With
    `hash_budget` (registration), at most as many requests as the budget of new hashes holds
    (1 hashing + `REGISTER_HASH_QUEUE` waiting) are let through at once, per worker; the rest
    are answered 503 here, so a flood from many addresses costs neither a body decode, nor
    a database lookup, nor a hash. The route still counts the attempts it lets through
    (`Authentication.limit`)."""

    def __init__(self, app: ASGIApp, rate: str, hash_budget: bool = False) -> None:
        self.app = app
        self.rate = rate
        self.hash_budget = hash_budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth: Authentication = scope["litestar_app"].state.authentication
        wait = await auth.limiter.test(getattr(auth, self.rate), auth.client_of(scope))
        if wait:
            await _refuse(send, scope["path"], 429, "too many attempts; retry later", wait)
        elif not self.hash_budget:
            await self.app(scope, receive, send)
        elif auth.registrations_in_flight >= auth.registrations_at_once:
            detail = "too many registrations at once; retry later"
            await _refuse(send, scope["path"], 503, detail, 1)
        else:
            auth.registrations_in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                auth.registrations_in_flight -= 1


async def _refuse(send: Send, path: str, status: int, detail: str, retry_after: int) -> None:
    title = "Too Many Requests" if status == 429 else "Service Unavailable"
    body = msgspec.json.encode(
        {"title": title, "status": status, "detail": detail, "instance": path}
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def too_many(wait: int) -> TooManyRequestsException:
    """The 429 for a key over its limit."""
    return TooManyRequestsException(
        detail="too many attempts; retry later", headers={"Retry-After": str(wait)}
    )


def _invalid_credentials() -> NotAuthorizedException:
    return NotAuthorizedException(
        detail="unknown username or wrong password",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
    )


def _invalid_refresh() -> NotAuthorizedException:
    return NotAuthorizedException(
        detail="the refresh token is unknown, expired, revoked or already used",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
    )


class AuthController(ApiController):
    """Log in, refresh, log out."""

    path = "/auth"
    tags = ["auth"]
    security = NO_TOKEN

    @post(
        "/token",
        summary="Log in: an access token and a refresh token",
        status_code=200,
        responses=problem_responses(401, 413, 429, authenticated=False),
        middleware=[DefineMiddleware(EarlyRefusal, rate="login_per_address")],
    )
    async def token(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[Login],
        accounts: NamedDependency[AccountRepository],
    ) -> TokenPair:
        auth: Authentication = request.app.state.authentication
        # Every attempt counts against its address; only a password really checked and
        # wrong counts against the username (a refused attempt cannot lock an account).
        await auth.limit(auth.login_per_address, auth.client(request))
        wait = await auth.limiter.test(auth.login_per_username, data.username)
        if wait:
            raise too_many(wait)
        credentials = await accounts.credentials(data.username)
        stored = credentials.password_hash if credentials else None
        # Checked whatever `credentials` is: an unknown user costs the same hash check.
        matches = await auth.passwords.check(stored, data.password)
        if credentials is None or not matches:
            await auth.limiter.hit(auth.login_per_username, data.username)
            raise _invalid_credentials()
        if stored is not None and auth.passwords.needs_rehash(stored):
            try:
                rehashed = await auth.passwords.hash(data.password)
            except HashingBusyError:
                rehashed = None  # the budget is full (a registration flood): next login
            if rehashed is not None:
                await accounts.set_password_hash(credentials.user_id, rehashed)
                log.info(
                    "password rehashed with the current parameters", user_id=credentials.user_id
                )
        return await auth.issue(accounts, credentials.user_id)

    @post(
        "/refresh",
        summary="Spend a refresh token for a new pair",
        status_code=200,
        responses=problem_responses(401, 413, authenticated=False),
    )
    async def refresh(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[Refresh],
        accounts: NamedDependency[AccountRepository],
    ) -> TokenPair:
        auth: Authentication = request.app.state.authentication
        fresh, fresh_hash = new_refresh_token()
        spent_hash = refresh_token_hash(data.refresh_token)
        try:
            user_id = await accounts.rotate(
                spent_hash,
                fresh_hash,
                auth.settings.refresh_token_ttl_s,
                auth.settings.refresh_token_max_lifetime_s,
            )
        except RefreshTokenReusedError:
            log.warning("a spent refresh token was used again; its family is revoked")
            raise _invalid_refresh() from None
        if user_id is None:
            raise _invalid_refresh()
        return auth.pair(user_id, fresh)

    @post(
        "/logout",
        summary="Revoke the refresh token's family",
        status_code=204,
        responses=problem_responses(413, authenticated=False),
    )
    async def logout(
        self, data: JSONBody[Refresh], accounts: NamedDependency[AccountRepository]
    ) -> None:
        await accounts.end_family(refresh_token_hash(data.refresh_token))


class SessionsController(ApiController):
    """What a signed-in caller does with their sessions (the bearer check applies)."""

    path = "/auth"
    tags = ["auth"]

    @post(
        "/logout-all",
        summary="Revoke every refresh token of the caller (log out everywhere)",
        status_code=204,
        responses=problem_responses(),
    )
    async def logout_all(
        self, request: Request[Caller, Any, Any], accounts: NamedDependency[AccountRepository]
    ) -> None:
        revoked = await accounts.end_all_families(request.user.id)
        log.info("every refresh token family revoked", user_id=request.user.id, tokens=revoked)
