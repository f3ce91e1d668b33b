"""The development signing key for access tokens, kept under `.data/` (mode 0600) so that a
restart and every worker of `messenger serve` agree on it. Production sets `AUTH_JWT_KEYS`
(required there); tests give their own."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from app.dev.local import DATA_DIR

KEY_FILE = DATA_DIR / "jwt-keys"


def jwt_keys(path: Path = KEY_FILE) -> str:
    """`AUTH_JWT_KEYS` for development: read from `path`, made there on first use."""
    if path.exists():
        return path.read_text().strip()
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    value = f"dev-1:{secret}"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value
