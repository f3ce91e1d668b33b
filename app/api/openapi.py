"""The OpenAPI document at `/schema`: its configuration (served offline, sign-in explained) and
what Litestar cannot derive from the handlers.

- `X-Consistency-Token` (`app.api.consistency`): a response header of every write, an optional
  request header of every API read. It is added here, in one place, because the header is
  set by a `before_send` hook and read by the session dependency, not by any handler.
- `HEAD` is served beside every `GET` (`app.api.methods.read`) but is not listed a second
  time: RFC 9110 defines it as the `GET` without a body, and the document says so once.

The Swagger UI's script and styles are served from the package (`swagger-ui-py`, Swagger UI 5) under
`/schema/static/`, so the page renders with no outside network.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPIHeader, Operation, Parameter, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.router import Router
from litestar.static_files import create_static_files_router

from app.api.consistency import HEADER

SCHEMA_PATH = "/schema"
STATIC_PATH = f"{SCHEMA_PATH}/static"


def _assets() -> Path:
    """swagger-ui-py's `static/` folder, found without importing the package (its Python
    side, for other frameworks, would import Jinja)."""
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


_FAVICON = f"<link rel='icon' type='image/png' href='{STATIC_PATH}/favicon-32x32.png'>"
# No consistency token: probes and metrics have no session; the event stream is positioned by
# its own `Last-Event-ID` (docs/events.md), not by a WAL position.
_NO_TOKEN_PREFIXES = ("/health", "/metrics", "/events")

DESCRIPTION = """\
A messenger: accounts, chats and their messages.

**Signing in** (every route but registration, sign-in and the operator endpoints needs an
access token):

1. Register: `POST /users` with `{"username": "alice", "password": "correct horse battery"}`
   (try it below: *Try it out*, then *Execute*).
2. Sign in: `POST /auth/token` with the same JSON. The answer holds an `access_token` (valid
   15 minutes by default) and a `refresh_token` (`POST /auth/refresh` trades it for a new
   pair; `POST /auth/logout` ends it).
3. Press **Authorize** (top right), paste the `access_token` (without `Bearer `), and
   *Authorize*: every request from this page then sends `Authorization: Bearer <token>`.

**Reading your own writes**: every write answers with an `X-Consistency-Token` header. Send it
back as `X-Consistency-Token` on a later read and that read sees the write, even when it is
served by a read replica.

**HEAD**: every `GET` also answers `HEAD` (the same status and headers, no body); those are not
listed again. Errors are RFC 9457 problem documents (`application/problem+json`).
"""

_TOKEN_SCHEMA = Schema(
    type=OpenAPIType.STRING,
    pattern=r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$",
    examples=["0/16B3748"],
)
_RESPONSE_HEADER = OpenAPIHeader(
    schema=_TOKEN_SCHEMA,
    description=(
        "The primary's WAL position after this write committed (sent when the request wrote)."
        f" Send it back as `{HEADER}` on a later read to be served data at least this recent."
    ),
)
_REQUEST_HEADER = Parameter(
    name="X-Consistency-Token",
    param_in="header",
    required=False,
    schema=_TOKEN_SCHEMA,
    description=(
        "A token from an earlier write's response: this read is served only by a server that"
        " has replayed that write (a replica waits briefly for it, else the primary answers)."
        " A malformed token is a 400."
    ),
)


def openapi_config() -> OpenAPIConfig:
    """The document's configuration, its UI using the packaged assets."""
    return OpenAPIConfig(
        title="Messenger API",
        version="1.0.0",
        description=DESCRIPTION,
        path=SCHEMA_PATH,
        render_plugins=[
            SwaggerRenderPlugin(
                js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
                css_url=f"{STATIC_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{STATIC_PATH}/swagger-ui-standalone-preset.js",
                favicon=_FAVICON,
            )
        ],
    )


def swagger_assets() -> Router:
    """The Swagger UI's files, from the installed package, cached by the browser a day."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[_assets()],
        include_in_schema=False,
        cache_control=None,
        name="swagger-assets",
    )


def finish_document(app: Litestar) -> None:
    """Drop the `HEAD` twins of `GET` operations and document `X-Consistency-Token`.

    Litestar builds the document once, on first use, and keeps it; this builds it now (about
    20 ms, once per worker) and edits the kept one, so `/schema/openapi.json`, the UI and
    `litestar schema openapi` all show the same document.
    """
    for path, item in (app.openapi_schema.paths or {}).items():
        item.head = None
        if path.startswith(_NO_TOKEN_PREFIXES):
            continue
        if item.get is not None:
            _add_request_header(item.get)
        for write in (item.post, item.put, item.patch, item.delete):
            if write is not None:
                _add_response_header(write)


def _add_request_header(operation: Operation) -> None:
    parameters = list(operation.parameters or [])
    parameters.append(_REQUEST_HEADER)
    operation.parameters = parameters


def _add_response_header(operation: Operation) -> None:
    for code, response in (operation.responses or {}).items():
        if code.startswith("2") and hasattr(response, "headers"):
            response.headers = {**(response.headers or {}), "X-Consistency-Token": _RESPONSE_HEADER}
