"""Litestar internals: the pieces of the application that copy or reach into Litestar.

Written for Litestar 2.25 (`WRITTEN_FOR`; 2.25.0 installed when written). Each piece:

- `auth_bypassed`: Litestar's rule for skipping an authentication middleware
  (`litestar.middleware._utils.should_bypass_middleware`, private), copied because
  `app.api.bearer` replaces the middleware's per-request path: Litestar's
  `JWTAuthenticationMiddleware` built an `ASGIConnection`, a `Token` dataclass and called a
  user handler, 58-84 µs of a request in the benchmark's profile (docs/performance.md).
- `StructSchemaPlugin`: Litestar's OpenAPI plugin for msgspec structs lives in a private
  module (`litestar._openapi`); `app.api.schemas` extends it so that a body refusing unknown
  fields is documented with `additionalProperties: false`.
- `handler_parameters`: a route handler's parsed signature (`parsed_fn_signature`, not part
  of the documented API), read once per handler by strict input (`app.api.inputs`), which
  decodes bodies with msgspec's strict decoder and checks integer parameters' spelling.
- `operation_id`: Litestar's operationId for a one-method route, copied so that the `GET` of
  a `GET`+`HEAD` route keeps the id it had alone (`app.api.head_options`).
- `send_as_head`: marks an ASGI response as a `HEAD` response (headers, no body), which
  Litestar does only for its own `HEAD` routes (`app.api.head_options`).
- `PATH_TEMPLATE`: the scope key Litestar's router sets to the matched route's template
  (`/chats/{chat_id}/messages`). The HTTP metrics (`app.ops.http_metrics`), the
  tracing span names (`app.ops.tracing`) and `OPTIONS` (`app.api.head_options`) read it
  with the literal key, not through this module, so a request pays no extra lookup; the
  test checks the router still sets it. Litestar's own `PrometheusMiddleware` built a
  `Request` and four label dictionaries per request for the same labels, ~100 µs of a
  ~900 µs request on the saturating benchmarks.
"""

from __future__ import annotations

import re
from typing import Any

from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.enums import HttpMethod
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.middleware.authentication import AbstractAuthenticationMiddleware
from litestar.response.base import ASGIResponse
from litestar.types import Scope
from litestar.typing import FieldDefinition

WRITTEN_FOR = ("litestar", "2.25", "2.26")

PATH_TEMPLATE = "path_template"
"""The scope key of the matched route's template (set by Litestar's router)."""

__all__ = [
    "PATH_TEMPLATE",
    "WRITTEN_FOR",
    "StructSchemaPlugin",
    "auth_bypassed",
    "handler_parameters",
    "operation_id",
    "send_as_head",
]

_SEPARATORS = re.compile(r"[!#$%&'*+\-.^_`|~:]+")


def auth_bypassed(middleware: AbstractAuthenticationMiddleware, scope: Scope) -> bool:
    """Whether `middleware` lets `scope` through unauthenticated, by Litestar's rules in its
    order: the scope type, a route that opted out (the middleware's `exclude_opt_key`
    option), an excluded method, an excluded path (no mounts here)."""
    if scope["type"] not in middleware.scopes:
        return True
    handler = scope.get("route_handler")
    opt_key = middleware.exclude_opt_key
    if opt_key and handler is not None and handler.opt.get(opt_key):
        return True
    methods = middleware.exclude_http_methods
    if methods and scope.get("method") in methods:
        return True
    exclude = middleware.exclude
    return exclude is not None and exclude.search(scope["path"]) is not None


def handler_parameters(handler: BaseRouteHandler) -> dict[str, FieldDefinition]:
    """The handler's parameters as Litestar parsed them from its signature."""
    return handler.parsed_fn_signature.parameters


def operation_id(handler: HTTPRouteHandler, method: str, components: list[Any]) -> str:
    """Litestar's id for a one-method route (path components, then the handler's name), so a
    `GET` keeps the id it had alone; its `HEAD` has `Head` before the handler's name."""
    path = ""
    for component in (getattr(part, "name", part) for part in components):
        if component.title() not in path:
            path += component.title()
    name = handler.handler_name.title()
    return _SEPARATORS.sub("", path + ("Head" + name if method == HttpMethod.HEAD else name))


def send_as_head(response: ASGIResponse) -> None:
    """Send the response's status and headers (`Content-Length` included), and no body."""
    response.is_head_response = True
