"""Errors as RFC 9457 problem details (`application/problem+json`).

Titles and details are written for API clients; they never carry SQL, parameters, driver
messages or stack traces. Unexpected errors are logged by type and place only, since a
driver's message may quote the statement and its parameters.

Hand-written, not Litestar's `ProblemDetailsPlugin` (litestar 2.x, checked against this
module; docs/architecture.md, "Errors"): the plugin only turns exceptions into
`application/problem+json`, which is the smallest part of this module, and adopting it would
lose behaviour that tests pin: it puts an `HTTPException`'s detail in `title` (RFC 9457's
title is the type's summary) and its `extra` unfiltered at the top level (the validation
items' internals; here only `message`, `key`, `source`), sets no `instance`, answers a `HEAD`
with a body, adds no RFC 6750 `WWW-Authenticate` challenge to a 401, documents no problem
responses in OpenAPI, and leaves the domain, database (503 + `Retry-After`) and unexpected
errors (logged without the driver's message) to handlers of our own anyway. CPU is not the
reason: building and encoding a 404 costs the same both ways (about 23 µs, minimum of
5 runs of 5,000 on the 2-core development box).
"""

from __future__ import annotations

import traceback
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from app.api.head_options import HeadAwareResponse
from app.db.errors import DatabaseUnavailableError, TokenAheadError, sqlstate_of
from app.domain.errors import ConflictError, DomainError, ForbiddenError, NotFoundError
from app.security.passwords import HashingBusyError
from app.security.ratelimit import LimiterUnavailableError

PROBLEM_JSON = "application/problem+json"

log = structlog.get_logger("app.api")


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document."""

    title: str
    status: int
    detail: str | None = None
    type: str = "about:blank"
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    detail: str | None,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    """Build a problem+json response for `request` (headers only to a `HEAD` request)."""
    problem = Problem(
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return HeadAwareResponse(problem, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# What each domain outcome means in HTTP; a DomainError not listed is a plain 400.
DOMAIN_STATUSES: dict[type[DomainError], int] = {
    NotFoundError: 404,
    ForbiddenError: 403,
    ConflictError: 409,
}


def status_of(error: DomainError) -> int:
    """The HTTP status of a domain outcome."""
    for cls, status in DOMAIN_STATUSES.items():
        if isinstance(error, cls):
            return status
    return 400


REALM = "messenger"


def _domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    status = status_of(exc)
    headers = None
    if status == 403:  # RFC 6750: the token is fine, it does not reach this resource
        headers = {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"'}
    return problem_response(request, status, exc.detail, headers=headers)


def _limiter_unavailable(
    request: Request[Any, Any, Any], exc: LimiterUnavailableError
) -> Response[Problem]:
    log.warning("answered 503: the rate limiter's store is unavailable", error=str(exc))
    detail = "unavailable: the rate limiter does not answer"
    return problem_response(request, 503, detail, headers={"Retry-After": "1"})


def _hashing_busy(request: Request[Any, Any, Any], exc: HashingBusyError) -> Response[Problem]:
    detail = f"too many {exc.what} at once; retry later"
    return problem_response(request, 503, detail, headers={"Retry-After": "1"})


def _unavailable(
    request: Request[Any, Any, Any], exc: DatabaseUnavailableError
) -> Response[Problem]:
    log.warning("request answered 503", path=request.url.path, reason=exc.reason)
    return problem_response(
        request, 503, exc.reason, headers={"Retry-After": str(exc.retry_after_s)}
    )


def _token_ahead(request: Request[Any, Any, Any], exc: TokenAheadError) -> Response[Problem]:
    detail = "X-Consistency-Token is ahead of the database: send a token an earlier write returned"
    return problem_response(request, 400, detail)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    errors = None
    detail: str | None = exc.detail
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [_clean_validation_item(item) for item in exc.extra if isinstance(item, dict)]
    if status >= 500 or detail == HTTPStatus(status).phrase:
        detail = None
    headers = exc.headers
    if status == 401 and not (headers and "WWW-Authenticate" in headers):
        headers = {**(headers or {}), "WWW-Authenticate": _challenge(request)}
        detail = "this route needs a valid access token (Authorization: Bearer ...)"
    return problem_response(request, status, detail, errors=errors, headers=headers)


def _challenge(request: Request[Any, Any, Any]) -> str:
    """RFC 6750: no credentials get the bare challenge; bad ones `invalid_token`."""
    if request.headers.get("authorization"):
        return f'Bearer realm="{REALM}", error="invalid_token"'
    return f'Bearer realm="{REALM}"'


def _clean_validation_item(item: dict[str, Any]) -> dict[str, Any]:
    """Keep only what tells the client which field was wrong and why."""
    return {key: item[key] for key in ("message", "key", "source") if key in item}


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown"
    log.error(
        "unhandled error",
        path=request.url.path,
        error=type(exc).__name__,
        sqlstate=sqlstate_of(exc),
        where=where,
    )
    return problem_response(request, 500, "an unexpected error occurred; it has been logged")


_DESCRIPTIONS = {
    400: "Invalid input (the `errors` member names the fields)",
    401: "No access token, or one that is malformed, expired or wrongly signed",
    403: "The token does not reach this resource (another user's)",
    404: "No such record",
    409: "Conflicts with stored data",
    413: "The request body is too large",
    415: "The body must be sent as `Content-Type: application/json`",
    429: "Too many attempts; retry after `Retry-After` seconds",
    503: "The database is unavailable or overloaded; retry after `Retry-After` seconds",
}


def problem_responses(*statuses: int, authenticated: bool = True) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem+json answers a route may give (400 and 503 always,
    401 on the routes that need a token)."""
    body = [415] if 413 in statuses else []  # a route that takes a body takes JSON only
    wanted = sorted({400, 503, *statuses, *body, *([401] if authenticated else [])})
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS[status],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in wanted
    }


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: _domain_error,
    DatabaseUnavailableError: _unavailable,
    TokenAheadError: _token_ahead,
    LimiterUnavailableError: _limiter_unavailable,
    HashingBusyError: _hashing_busy,
    HTTPException: _http_error,
    Exception: _unexpected,
}

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "Problem", "problem_response", "problem_responses"]
