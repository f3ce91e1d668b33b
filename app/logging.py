"""structlog setup: JSON lines in production, readable console lines elsewhere, on stderr.

Standard-library records (granian's worker log, SQLAlchemy and asyncpg warnings) go through
the same processors, so production logs are JSON throughout. Every event is scrubbed of URL
credentials and of the passwords in the configured URLs before it is rendered: a DSN or a
password never reaches a log line, whatever a caller passed in. With tracing on
(`app.ops.tracing`), a line written inside a traced request carries its `trace_id` and
`span_id` (W3C hex), so a log line leads to its trace and back.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.config import LogLevel, Settings
from app.redact import redact_text

try:  # the `otel` extra; without it no line has trace ids
    from opentelemetry.trace import get_current_span as _current_span
except ImportError:  # pragma: no cover - the dev group installs it
    _current_span = None  # type: ignore[assignment]

_MIN_SECRET_LEN = 4  # shorter passwords are still removed from URLs, just not from free text
_GRANIAN_LOGGERS = ("_granian", "granian.access")
# Raised by the lifespan after it logged one clear line; its traceback would only repeat it.
QUIET_STARTUP_ERROR = "StartupAborted"
_LEVELS: dict[LogLevel, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library's logging to stderr in the environment's format."""
    redact = _Redactor(_secrets_of(settings))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_stdlib_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_pid,
        structlog.processors.format_exc_info,
        redact,
    ]
    if settings.tracing.enabled and _current_span is not None:
        shared.insert(-1, _add_trace_ids)
    renderer: Processor
    if settings.app_env == "production":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[settings.log_level]),
        # One write per line (PrintLogger writes the line and its newline apart): the workers
        # share stderr, and two writes let another worker's line land between them.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        # Cached loggers ignore later configuration, which tests rely on (capture_logs).
        cache_logger_on_first_use=settings.app_env != "test",
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(logging.WARNING, _LEVELS[settings.log_level]))
    for name in _GRANIAN_LOGGERS:
        granian = logging.getLogger(name)
        if granian.handlers:  # running in a granian worker: same stream, same format
            granian.handlers = [handler]
    logging.getLogger("_granian").addFilter(_quiet_startup_failure)


def _secrets_of(settings: Settings) -> tuple[str, ...]:
    database = settings.database
    urls: Iterable[str | None] = (database.url, *database.replica_urls, settings.redis_url)
    found: set[str] = set()
    for url in urls:
        if not url:
            continue
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password and len(password) >= _MIN_SECRET_LEN:
            found.update({password, unquote(password)})
    return tuple(sorted(found, key=len, reverse=True))


class _Redactor:
    """Processor: remove URL credentials and known passwords from every string in the event."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = secrets

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            event[key] = self._clean(value)
        return event

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value, self._secrets)
        if isinstance(value, (list, tuple)):
            return type(value)(self._clean(item) for item in value)
        if isinstance(value, MutableMapping):
            return {key: self._clean(item) for key, item in value.items()}
        return value


def _add_stdlib_logger_name(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    record = event.get("_record")
    if isinstance(record, logging.LogRecord):
        event.setdefault("logger", record.name)
    return event


def _add_pid(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    event.setdefault("pid", os.getpid())
    return event


def _add_trace_ids(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """`trace_id` and `span_id` of the span this line is written in, if one is recording."""
    assert _current_span is not None
    context = _current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def _quiet_startup_failure(record: logging.LogRecord) -> bool:
    """Drop granian's "startup failed" records (a traceback) caused by `StartupAborted`."""
    return QUIET_STARTUP_ERROR not in _describe(record)


def _describe(record: logging.LogRecord) -> str:
    text = str(record.msg)
    if record.exc_info and record.exc_info[1] is not None:
        text += " " + " ".join(type(error).__name__ for error in _leaves(record.exc_info[1]))
    return text


def _leaves(error: BaseException) -> Iterable[BaseException]:
    yield error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)


class Throttle:
    """Lets one log line through per `interval_s` and counts the ones it held back: a flood
    of the same event (checkout failures, slow clients, a failing check) must not become a
    flood of log lines. The one helper for that (`app.db.pool`, `app.ops.request_bounds`,
    `app.ops.readiness`)."""

    __slots__ = ("_held_back", "_interval_s", "_next_at")

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_at = 0.0
        self._held_back = 0

    def allow(self) -> int | None:
        """The number held back since the last line let through, or None to stay quiet."""
        now = time.monotonic()
        if now < self._next_at:
            self._held_back += 1
            return None
        self._next_at = now + self._interval_s
        held_back, self._held_back = self._held_back, 0
        return held_back

    def restart(self) -> None:
        """A line was written anyway (a change worth telling at once): the interval starts
        now, and nothing is held back."""
        self._next_at = time.monotonic() + self._interval_s
        self._held_back = 0
