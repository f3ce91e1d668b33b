"""`HEAD` and `OPTIONS`, as RFC 9110 defines them, for every API route.

- `HEAD` is served by every `GET` route (declared with `read`, documented as its own operation;
  the `GET` keeps its operationId): the same status and headers, `Content-Length` included, and
  no body (`HeadAwareResponse`, which the problem documents use too, so a `HEAD` of a missing
  record is a bodiless 404).
- `OPTIONS` answers 204 with `Allow` naming exactly the methods of the matched path. Litestar
  makes its own `OPTIONS` handler when a route is first registered and keeps it when more
  methods join the path, so its `Allow` misses methods (`/users`: `OPTIONS, POST`, no `GET`);
  `options_handler` reads the methods of the path from the application's routes when asked.
"""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Litestar, Request, Response, route
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.response.base import ASGIResponse
from litestar.routes import HTTPRoute

from app.compat.litestar import operation_id, send_as_head

T = TypeVar("T")

GET_HEAD = [HttpMethod.GET, HttpMethod.HEAD]
"""The methods of a read route."""


def read(path: str, **kwargs: Any) -> route:
    """A read route: `GET`, and `HEAD` beside it."""
    return route(path, http_method=GET_HEAD, operation_id=operation_id, **kwargs)


class HeadAwareResponse(Response[T]):
    """A response that, to a `HEAD` request, sends everything a `GET` would but the body."""

    def to_asgi_response(
        self, app: Litestar | None, request: Request[Any, Any, Any], **kwargs: Any
    ) -> ASGIResponse:
        response = super().to_asgi_response(app, request, **kwargs)
        if request.method == HttpMethod.HEAD:
            send_as_head(response)  # the headers, then an empty body
        return response


def allowed_methods(request: Request[Any, Any, Any]) -> list[str]:
    """The methods the path this request matched answers, sorted."""
    template = request.scope["path_template"]  # app.compat.litestar.PATH_TEMPLATE
    methods: set[str] = set()
    for registered in request.app.routes:
        if isinstance(registered, HTTPRoute) and registered.path_format == template:
            methods.update(registered.methods)
    return sorted(methods)


def _options(request: Request[Any, Any, Any]) -> Response[None]:
    return Response(None, status_code=204, headers={"Allow": ", ".join(allowed_methods(request))})


def options_handler(paths: list[str]) -> HTTPRouteHandler:
    """The `OPTIONS` handler of `paths` (left out of the OpenAPI document, like Litestar's)."""
    return route(
        paths, http_method=HttpMethod.OPTIONS, include_in_schema=False, sync_to_thread=False
    )(_options)
