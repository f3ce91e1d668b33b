"""The application for Litestar's own command line, which loads it without serving it:

    LITESTAR_APP=app.tooling:create_app .venv/bin/litestar routes
    LITESTAR_APP=app.tooling:create_app .venv/bin/litestar schema openapi --output openapi.json

(`just litestar routes` sets `LITESTAR_APP`.) `app.asgi:app`, what granian serves, refuses to
load without a `DATABASE_URL`; these commands never open the pools, so the settings come from
the environment with a placeholder URL and a throwaway signing key when those are unset.
`messenger serve` remains the way to serve (`litestar run` would need uvicorn).
"""

from __future__ import annotations

import base64
import os
import secrets

from litestar import Litestar

from app.config import Settings
from app.main import create_app as _create_app

PLACEHOLDER_DATABASE_URL = "postgresql://localhost/messenger"


def create_app() -> Litestar:
    """The application as the environment configures it, loadable without a database."""
    environ = dict(os.environ)
    environ.setdefault("DATABASE_URL", PLACEHOLDER_DATABASE_URL)
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    environ.setdefault("AUTH_JWT_KEYS", f"tooling:{key}")
    return _create_app(Settings.from_env(environ))
