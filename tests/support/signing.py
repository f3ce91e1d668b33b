"""The suite's signing key for access tokens.

Every app and service process a test starts verifies with it (`TestDatabase.env()` passes it
as `AUTH_JWT_KEYS`), so the workers of one granian process agree, and a test can sign a token
for any user id, one that does not exist included (`token_for`)."""

from __future__ import annotations

import base64

from app.security.tokens import AccessTokens

KEY_ID = "suite"
SECRET = b"messenger-test-suite-signing-key"  # 32 bytes: fixed, so every process agrees
AUTH_JWT_KEYS = f"{KEY_ID}:{base64.urlsafe_b64encode(SECRET).decode().rstrip('=')}"
TOKEN_TTL_S = 900.0


def token_for(user_id: int) -> str:
    """An access token for `user_id`, as `POST /auth/token` would answer it."""
    return AccessTokens({KEY_ID: SECRET}, KEY_ID, TOKEN_TTL_S).issue(user_id)
