"""Who may read the operator endpoints (`/metrics`, `/health/metrics`): a Litestar guard.

With `METRICS_TOKEN` set they need `Authorization: Bearer <METRICS_TOKEN>` (Prometheus
sends it with `authorization: {credentials: ...}` in its scrape config); without it they are
open, which production allows only when `METRICS_PUBLIC=true` says so (`app.config`). The
probes (`/health`, `/health/ready`) stay open: the orchestrator calls them unauthenticated.
The comparison takes the same time whatever the token (`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

REALM = "messenger-operations"


def is_operator(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the request carries the metrics token, or none is set (open endpoints)."""
    expected: str | None = connection.app.state.settings.auth.metrics_token
    if expected is None:
        return True
    scheme, _space, presented = connection.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    )


def operator_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Refuse the request (401) unless it carries the metrics token, when one is set."""
    if is_operator(connection):
        return
    presented = connection.headers.get("authorization", "").partition(" ")[2]
    error = ', error="invalid_token"' if presented else ""
    raise NotAuthorizedException(
        detail="this endpoint needs the operator's bearer token (METRICS_TOKEN)",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}"{error}'},
    )
