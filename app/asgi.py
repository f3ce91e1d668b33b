"""The ASGI application granian serves: `app.asgi:app`."""

from __future__ import annotations

from app.config import Settings
from app.main import create_app

app = create_app(Settings.from_env())
