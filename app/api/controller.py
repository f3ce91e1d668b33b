"""`ApiController`: what every API controller shares.

Strict input (`app.api.inputs`: bodies decoded strictly, integer parameters spelled
canonically), `HEAD` without a body and an exact `OPTIONS` for every path it serves
(`app.api.head_options`).
"""

from __future__ import annotations

from litestar import Controller
from litestar.handlers import BaseRouteHandler

from app.api.head_options import HeadAwareResponse, options_handler
from app.api.inputs import StrictRequest, check_integer_parameters


class ApiController(Controller):
    """Base of the API's controllers."""

    request_class = StrictRequest
    response_class = HeadAwareResponse
    before_request = staticmethod(check_integer_parameters)

    def get_route_handlers(self) -> list[BaseRouteHandler]:
        """One `OPTIONS` handler for all the paths of the controller's handlers, then those.

        First, so that it is the first handler registered on each path: Litestar adds its own
        `OPTIONS` handler only to a path registered without one.
        """
        handlers = super().get_route_handlers()
        options = options_handler(sorted({path for handler in handlers for path in handler.paths}))
        options.owner = self
        return [options, *handlers]
