"""Every bypass of a library's internals (`app.compat`) still finds what it relies on, and
behaves as the public path would: these fail when an upgrade changes the library under it."""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version
from typing import Any

import pytest
from litestar import Litestar, get, post, route
from litestar.enums import HttpMethod, ScopeType
from litestar.middleware._utils import should_bypass_middleware
from litestar.middleware.authentication import AbstractAuthenticationMiddleware
from litestar.plugins import OpenAPISchemaPlugin
from litestar.response.base import ASGIResponse
from packaging.version import Version
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import greenlet_spawn

from app.compat import granian, litestar, opentelemetry_asyncpg, sqlalchemy

RANGES = [
    sqlalchemy.WRITTEN_FOR,
    litestar.WRITTEN_FOR,
    granian.WRITTEN_FOR,
    opentelemetry_asyncpg.WRITTEN_FOR,
    opentelemetry_asyncpg.ASYNCPG_WRITTEN_FOR,
]


@pytest.mark.parametrize("written_for", RANGES, ids=[each[0] for each in RANGES])
def test_the_installed_version_is_one_the_bypass_was_written_for(
    written_for: tuple[str, str, str],
) -> None:
    distribution, lowest, below = written_for
    installed = Version(version(distribution))
    assert Version(lowest) <= installed < Version(below), (
        f"{distribution} {installed} is outside [{lowest}, {below}): check app/compat/ against"
        " the new version, then widen the range"
    )


# -- SQLAlchemy: the idle reaper's queue ------------------------------------------------------


class _DriverConnection:
    """What QueuePool needs of a DBAPI connection."""

    closed = False

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


_CREATOR: Any = _DriverConnection  # a stand-in for the driver's connect


def _pool(size: int) -> AsyncAdaptedQueuePool:
    return AsyncAdaptedQueuePool(_CREATOR, pool_size=size, max_overflow=0, use_lifo=True)


def test_the_idle_stack_is_the_queue_least_recently_returned_first() -> None:
    async def main() -> None:
        pool = _pool(3)
        first, second = await greenlet_spawn(pool.connect), await greenlet_spawn(pool.connect)
        first_driver, second_driver = first.driver_connection, second.driver_connection
        first.close()
        second.close()
        stack = sqlalchemy.idle_stack(pool)
        assert stack is not None
        assert [record.driver_connection for record in stack] == [first_driver, second_driver]
        reused = await greenlet_spawn(pool.connect)  # LIFO: the last returned is reused
        assert reused.driver_connection is second_driver
        reused.close()

    asyncio.run(main())


def test_forgetting_a_discarded_connection_counts_as_sqlalchemy_discarding_it() -> None:
    """Reaped: two connections, one closed from the bottom of the queue. Public path: a
    surplus connection (overflow) returned to a full queue, which QueuePool closes itself.
    Both pools then hold one idle connection and count one open."""

    def open_count(pool: AsyncAdaptedQueuePool) -> int:
        return pool.overflow() + pool.size()  # QueuePool counts connections this way

    async def main() -> list[tuple[int, int]]:
        reaped = _pool(2)
        public = AsyncAdaptedQueuePool(_CREATOR, pool_size=1, max_overflow=1)
        for pool in (reaped, public):
            held = [await greenlet_spawn(pool.connect) for _ in range(2)]
            for connection in held:
                connection.close()
        stack = sqlalchemy.idle_stack(reaped)
        assert stack is not None
        stack.pop(0).close()
        sqlalchemy.forget_discarded(reaped)
        return [(pool.checkedin(), open_count(pool)) for pool in (reaped, public)]

    reaped, public = asyncio.run(main())
    assert reaped == public == (1, 1)


def test_an_unexpected_pool_layout_turns_the_reaper_off() -> None:
    class Other:
        _pool = object()

    assert sqlalchemy.idle_stack(Other()) is None  # type: ignore[arg-type]


# -- opentelemetry-instrumentation-asyncpg: the three private hooks ---------------------------


def test_the_instrumentor_has_the_hooks_overridden_with_their_shape() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    for name in opentelemetry_asyncpg.HOOKS:
        hook = getattr(AsyncPGInstrumentor, name)
        assert inspect.iscoroutinefunction(hook), name
        assert list(inspect.signature(hook).parameters) == [
            "self",
            "func",
            "instance",
            "args",
            "kwargs",
        ], name


def test_the_subclass_wraps_each_hook_with_how_it_names_its_connection() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    wrapped: dict[Any, Any] = {}

    def wrap(hook: Any, connection_of: Any) -> Any:
        wrapped[hook] = connection_of
        return hook

    subclass = opentelemetry_asyncpg.request_statements(wrap)
    assert issubclass(subclass, AsyncPGInstrumentor)
    hooks = [getattr(AsyncPGInstrumentor, name) for name in opentelemetry_asyncpg.HOOKS]
    assert list(wrapped) == hooks
    connection = object()
    assert wrapped[hooks[0]](connection) is connection


def test_asyncpg_statements_and_cursors_keep_their_connection_in_a_slot() -> None:
    from asyncpg import connresource, cursor, prepared_stmt

    assert "_connection" in connresource.ConnectionResource.__slots__
    assert issubclass(prepared_stmt.PreparedStatement, connresource.ConnectionResource)
    assert issubclass(cursor.BaseCursor, connresource.ConnectionResource)

    class Statement:
        _connection = "the connection"

    assert opentelemetry_asyncpg.statement_connection(Statement()) == "the connection"
    assert opentelemetry_asyncpg.statement_connection(object()) is None


# -- Litestar ----------------------------------------------------------------------------------


class _Middleware(AbstractAuthenticationMiddleware):
    """Litestar's base class, configured as `JWTAuth` configures the bearer middleware."""

    async def authenticate_request(self, connection: Any) -> Any:
        raise NotImplementedError


class _Handler:
    def __init__(self, **opt: Any) -> None:
        self.opt = opt


@pytest.mark.parametrize(
    "scope",
    [
        {"type": ScopeType.HTTP, "method": "GET", "path": "/users/1"},
        {"type": ScopeType.HTTP, "method": "OPTIONS", "path": "/users/1"},
        {"type": ScopeType.HTTP, "method": "GET", "path": "/health/ready"},
        {"type": ScopeType.HTTP, "method": "GET", "path": "/x", "route_handler": _Handler()},
        {
            "type": ScopeType.HTTP,
            "method": "POST",
            "path": "/auth/token",
            "route_handler": _Handler(exclude_from_auth=True),
        },
        {"type": ScopeType.WEBSOCKET, "path": "/ws"},
        {"type": "lifespan", "path": "/"},
    ],
)
def test_the_bypass_rule_is_litestars(scope: dict[str, Any]) -> None:
    app: Any = None
    middleware = _Middleware(
        app,
        exclude="^/health",
        exclude_from_auth_key="exclude_from_auth",
        exclude_http_methods=[HttpMethod.OPTIONS],
        scopes={ScopeType.HTTP},
    )
    theirs = should_bypass_middleware(
        scope=scope,  # type: ignore[arg-type]
        exclude_http_methods=middleware.exclude_http_methods,
        exclude_opt_key=middleware.exclude_opt_key,
        exclude_path_pattern=middleware.exclude,
        scopes=middleware.scopes,
    )
    assert litestar.auth_bypassed(middleware, scope) == theirs  # type: ignore[arg-type]


def test_the_middleware_settings_the_bypass_reads_are_where_it_reads_them() -> None:
    read = {"exclude", "exclude_http_methods", "exclude_opt_key", "scopes"}
    assert read <= set(AbstractAuthenticationMiddleware.__slots__)


def test_a_get_head_route_keeps_the_operation_id_litestar_gives_a_get() -> None:
    @get("/chats/{chat_id:int}/messages", name="alone", sync_to_thread=False)
    def list_messages(chat_id: int) -> None:
        del chat_id

    @route(
        "/chats/{chat_id:int}/messages",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        operation_id=litestar.operation_id,
        sync_to_thread=False,
    )
    def list_messages_too(chat_id: int) -> None:
        del chat_id

    def get_id(handler: Any) -> tuple[str, str | None]:
        paths = Litestar([handler]).openapi_schema.paths
        assert paths is not None
        item = paths["/chats/{chat_id}/messages"]
        assert item.get is not None
        head = item.head.operation_id if item.head is not None else None
        return str(item.get.operation_id), head

    theirs, _ = get_id(list_messages)
    ours, head = get_id(list_messages_too)
    assert ours == theirs.replace("ListMessages", "ListMessagesToo")
    assert head == ours.replace("ListMessagesToo", "HeadListMessagesToo")


def test_a_response_sent_as_head_has_the_headers_and_no_body() -> None:
    response = ASGIResponse(body=b"hello", status_code=200)
    litestar.send_as_head(response)
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope: Any = {"type": "http", "method": "HEAD", "path": "/", "headers": []}
    asyncio.run(response(scope, receive, send))
    start, body = sent
    assert (b"content-length", b"5") in start["headers"]
    assert body["body"] == b""


def test_handler_parameters_are_the_parsed_signature() -> None:
    @post("/things", sync_to_thread=False)
    def create(data: dict[str, int], limit: int | None = None) -> None:
        del data, limit

    Litestar([create])
    parameters = litestar.handler_parameters(create)
    assert set(parameters) == {"data", "limit"}
    assert parameters["data"].annotation == dict[str, int]


def test_the_struct_schema_plugin_is_litestars_openapi_plugin() -> None:
    assert issubclass(litestar.StructSchemaPlugin, OpenAPISchemaPlugin)
    assert callable(litestar.StructSchemaPlugin.is_plugin_supported_field)


def test_the_router_sets_the_path_template_the_metrics_and_options_read() -> None:
    from litestar import Request
    from litestar.testing import TestClient

    @get("/chats/{chat_id:int}/messages", sync_to_thread=False)
    def template(request: Request[Any, Any, Any], chat_id: int) -> str:
        del chat_id
        return str(request.scope.get(litestar.PATH_TEMPLATE))

    with TestClient(Litestar([template])) as client:
        assert client.get("/chats/7/messages").text == "/chats/{chat_id}/messages"


def test_a_connection_returned_without_reset_needs_no_greenlet() -> None:
    """What `app.db.pool` does on return: the checkout's `close()`, outside a greenlet."""

    async def main() -> int:
        pool = AsyncAdaptedQueuePool(
            _CREATOR, pool_size=1, max_overflow=0, use_lifo=True, reset_on_return=None
        )
        checkout = await greenlet_spawn(pool.connect)
        checkout.close()  # would raise MissingGreenlet if the return did I/O
        return pool.checkedin()

    assert asyncio.run(main()) == 1
