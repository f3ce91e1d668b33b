"""opentelemetry-instrumentation-asyncpg internals: tracing statements inside requests only.

Written for opentelemetry-instrumentation-asyncpg 0.66b (`WRITTEN_FOR`; 0.66b1 installed)
and asyncpg 0.32 (`ASYNCPG_WRITTEN_FOR`).

The instrumentor traces every statement, including the background loops' (the monitor's
probes, the idle pings) which then become root spans of their own: a trace per probe per
second per worker. Its public options cannot tell a request's statement from a background
one, so `request_statements` subclasses it and wraps its three private hooks
(`_do_execute`, `_do_prepared_execute`, `_do_cursor_execute`, each `(self, func, instance,
args, kwargs)`, as wrapt calls them) so that a statement outside a traced request runs
untraced. The prepared statement and cursor hooks name their connection by asyncpg's private
`_connection` attribute (`statement_connection`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WRITTEN_FOR = ("opentelemetry-instrumentation-asyncpg", "0.51b0", "0.67")
ASYNCPG_WRITTEN_FOR = ("asyncpg", "0.30", "0.33")
HOOKS = ("_do_execute", "_do_prepared_execute", "_do_cursor_execute")
"""The instrumentor's private hooks `request_statements` overrides."""

Hook = Callable[[Any, Any, Any, Any, Any], Any]
"""A hook's shape: `(self, func, instance, args, kwargs)`."""


def statement_connection(statement: Any) -> Any:
    """The asyncpg connection of a prepared statement or cursor (None when unknown)."""
    return getattr(statement, "_connection", None)


def request_statements(wrap: Callable[[Hook, Callable[[Any], Any]], Hook]) -> type[Any]:
    """A subclass of `AsyncPGInstrumentor` whose hooks are `wrap(hook, connection_of)`:
    `connection_of(instance)` names the asyncpg connection a hook's statement runs on."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    def connection(instance: Any) -> Any:
        return instance

    class RequestStatements(AsyncPGInstrumentor):
        _do_execute = wrap(AsyncPGInstrumentor._do_execute, connection)
        _do_prepared_execute = wrap(
            AsyncPGInstrumentor._do_prepared_execute,
            statement_connection,
        )
        _do_cursor_execute = wrap(
            AsyncPGInstrumentor._do_cursor_execute,
            statement_connection,
        )

    return RequestStatements
