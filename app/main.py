"""`create_app(settings)`: the composition root. It builds the data layer, the probes and the
metrics files, hands them to the process's lifecycle in start order, and wires routes,
dependencies, middleware and error handlers into one Litestar application. The pools open in
the lifespan, not here."""

from __future__ import annotations

import dataclasses

import structlog
from litestar import Litestar
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware

from app.api.auth import AuthController, Authentication, SessionsController, development_keys
from app.api.chats import ChatController
from app.api.consistency import add_consistency_token
from app.api.dependencies import DEPENDENCIES
from app.api.events import EventController
from app.api.openapi import finish_document, openapi_config, swagger_assets
from app.api.problems import EXCEPTION_HANDLERS
from app.api.schemas import StrictBodySchemas
from app.api.users import UserController
from app.config import AuthSettings, Settings
from app.db.cluster import Database
from app.events.hub import Hub
from app.logging import configure_logging
from app.ops.health import HealthController
from app.ops.http_metrics import HttpMetricsMiddleware
from app.ops.prometheus import MetricsController, MetricsFiles
from app.ops.readiness import Readiness
from app.ops.request_bounds import RequestDeadlineMiddleware
from app.ops.tracing import Tracing
from app.process.heap import FrozenHeap
from app.process.lifecycle import Lifecycle, Phase
from app.process.loop_lag import LoopLag

REQUEST_MAX_BODY_BYTES = 64 * 1024

log = structlog.get_logger("app.main")


def create_app(settings: Settings) -> Litestar:
    """Build the application for `settings` (a `DATABASE_URL` is required by now)."""
    configure_logging(settings)
    database = Database(settings)
    # The event hub ends its streams as soon as draining begins (granian waits for them).
    events = Hub(settings, database, draining=lambda: lifecycle.phase is Phase.DRAINING)
    readiness = Readiness(database, events=events)
    authentication = Authentication(_auth_settings(settings), settings.redis_url, settings.limits)
    tracing = Tracing(settings.tracing)  # off unless OTEL_* variables ask for it
    lifecycle = Lifecycle(
        # Started in this order, stopped in the reverse one.
        # The heap is frozen last, once everything warm-up makes exists.
        [
            tracing,
            MetricsFiles(settings.server.workers),
            database,
            readiness,
            authentication,
            events,
            LoopLag(),
            FrozenHeap(),
        ],
        shutdown_timeout_s=settings.server.shutdown_timeout_s,
        drain_delay_s=settings.server.drain_delay_s,
    )
    openapi = settings.auth.openapi_enabled
    app = Litestar(
        route_handlers=[
            AuthController,
            SessionsController,
            UserController,
            ChatController,
            *([EventController] if settings.events.enabled else []),
            HealthController,
            MetricsController,
            *([swagger_assets()] if openapi else []),
        ],
        middleware=[
            DefineMiddleware(HttpMetricsMiddleware, lifecycle=lifecycle),
            # Inside the metrics: its 408s and 503s are counted, and so is the request.
            DefineMiddleware(
                RequestDeadlineMiddleware, lifecycle=lifecycle, limits=settings.requests
            ),
        ],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_consistency_token],
        plugins=[*tracing.plugins(), StrictBodySchemas()],
        on_app_init=[authentication.jwt.on_app_init],
        lifespan=[lifecycle.lifespan],
        state=State(
            {
                "lifecycle": lifecycle,
                "settings": settings,
                "database": database,
                "readiness": readiness,
                "authentication": authentication,
                "events": events,
            }
        ),
        request_max_body_size=REQUEST_MAX_BODY_BYTES,
        openapi_config=openapi_config() if openapi else None,
        logging_config=None,  # app.logging routes the standard library's logging itself
        debug=False,
    )
    if openapi:
        finish_document(app)
    return app


def _auth_settings(settings: Settings) -> AuthSettings:
    """The configured keys, or (outside production, which requires them) a key of this
    process's own, with a warning: such tokens die with the process and other workers."""
    if settings.auth.jwt_keys:
        return settings.auth
    log.warning(
        "no AUTH_JWT_KEYS: access tokens are signed with a key of this process only",
        hint="set AUTH_JWT_KEYS (messenger serve keeps one under .data/ in development)",
    )
    return dataclasses.replace(settings.auth, jwt_keys=development_keys())
