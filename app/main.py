"""`create_app(settings)`: the Litestar application with its data layer and endpoints."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from app.api.chats import ChatController
from app.api.consistency import add_consistency_token
from app.api.dependencies import DEPENDENCIES
from app.api.problems import EXCEPTION_HANDLERS
from app.api.users import UserController
from app.config import Settings
from app.lifecycle import Lifecycle, make_lifespan
from app.logging import configure_logging
from app.ops.health import HealthController
from app.ops.http_metrics import HttpMetricsMiddleware
from app.ops.prometheus import MetricsController

REQUEST_MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings) -> Litestar:
    """Build the application; the pools open in its lifespan, not here."""
    configure_logging(settings)
    lifecycle = Lifecycle()
    return Litestar(
        route_handlers=[UserController, ChatController, HealthController, MetricsController],
        middleware=[DefineMiddleware(HttpMetricsMiddleware, lifecycle=lifecycle)],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_consistency_token],
        lifespan=[make_lifespan(settings, lifecycle)],
        state=State({"lifecycle": lifecycle, "settings": settings}),
        request_max_body_size=REQUEST_MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="Messenger API",
            version="1.0.0",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        logging_config=None,  # app.logging routes the standard library's logging itself
        debug=False,
    )
