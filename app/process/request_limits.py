"""How long a worker waits for a request and how many it holds: the settings both the command
line (granian's flags) and the application (the request deadline) read.

`REQUEST_HEADER_TIMEOUT_S` (default 10): granian's `--http1-header-read-timeout`, the time
to receive a request's headers; hyper counts it from the moment a connection waits for a
request, so it is also how long an idle keep-alive connection is kept.
`REQUEST_BODY_TIMEOUT_S` (default 5): from the headers to the last byte of the body; later,
the request is answered 408 and its connection closed (`app.ops.request_deadline`).
`WORKER_CONNECTIONS` (default 1024): granian's `--backpressure`, the connections one worker
holds at once (idle keep-alive ones included; more wait in the listen backlog). All but
`PROBE_RESERVE` of them may carry a request being served: a request over that is refused at
once (503), except the operator endpoints (the probes and the metrics), so liveness and
readiness answer, and Prometheus sees what happens, while slow clients hold every other slot.

Kept apart from `app.config` (which owns every other setting) only because that module was
not this change's to edit; it parses the same way and raises the same `ConfigError`. It
imports nothing heavy: the command line's parent process reads it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from app.config import ConfigError

PROBE_RESERVE = 16
"""Connections per worker that only the operator endpoints (`OPERATOR_PATHS`) may use."""
OPERATOR_PATHS = frozenset({"/health", "/health/ready", "/health/metrics", "/metrics"})
"""Never refused for want of a slot: each answers at once, without reading a body."""
_MAX_HEADER_TIMEOUT_S = 60.0  # granian's bound on --http1-header-read-timeout


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Bounds on receiving requests, per worker."""

    header_timeout_s: float = 10.0
    """Time to receive a request's headers; also the idle keep-alive limit."""
    body_timeout_s: float = 5.0
    """Time from the headers to the end of the body; then 408."""
    worker_connections: int = 1024
    """Connections a worker holds at once (granian's `--backpressure`)."""

    @property
    def request_slots(self) -> int:
        """Requests a worker serves at once besides the operator endpoints."""
        return self.worker_connections - PROBE_RESERVE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RequestLimits:
        env = os.environ if environ is None else environ
        return cls(
            header_timeout_s=_seconds(
                env, "REQUEST_HEADER_TIMEOUT_S", 10.0, 1.0, _MAX_HEADER_TIMEOUT_S
            ),
            body_timeout_s=_seconds(env, "REQUEST_BODY_TIMEOUT_S", 5.0, 0.1, 600.0),
            worker_connections=_whole(env, "WORKER_CONNECTIONS", 1024, 2 * PROBE_RESERVE, 65536),
        )


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _seconds(
    env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float
) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw[:20]!r}") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise ConfigError(name, f"expected {minimum:g} to {maximum:g} seconds")
    return value


def _whole(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw[:20]!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"expected {minimum} to {maximum}")
    return value
