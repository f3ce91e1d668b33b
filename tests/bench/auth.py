"""The bench's credentials: a signing key for the run, one access token per seeded user, and
the operator's metrics token.

Tokens are minted before any load, as a client caches its access token between requests, with
the service's own `AccessTokens` (so they are exactly what `POST /auth/token` would answer)
and a TTL longer than the run. The key goes to the service (`AUTH_JWT_KEYS`) and to the
baseline (`BASELINE_JWT_KEYS`), which verify every request's bearer token alike. The wrk
scripts read the tokens from a file, line n holding user n's (`lua/common.lua`), so each
request carries the token of the user it acts as.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from app.security.tokens import AccessTokens

KEY_ID = "bench"
TOKEN_TTL_S = 12 * 3600.0  # longer than any run


@dataclass(frozen=True)
class BenchAuth:
    """One run's key (32 random bytes), metrics token and users' access tokens."""

    secret_b64: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    @property
    def jwt_keys(self) -> str:
        """`kid:secret` as `AUTH_JWT_KEYS` takes it (URL-safe base64, unpadded)."""
        return f"{KEY_ID}:{self.secret_b64}"

    def secret(self) -> bytes:
        padded = self.secret_b64 + "=" * (-len(self.secret_b64) % 4)
        return base64.urlsafe_b64decode(padded)

    def issuer(self) -> AccessTokens:
        return AccessTokens({KEY_ID: self.secret()}, KEY_ID, TOKEN_TTL_S)

    def write_tokens(self, users: int, path: Path) -> list[str]:
        """Mint users 1..`users`' access tokens; write them one a line (line n: user n), 0600.
        Returns them, index 0 being user 1's."""
        issuer = self.issuer()
        tokens = [issuer.issue(user_id) for user_id in range(1, users + 1)]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(tokens) + "\n")
        return tokens

    def metrics_headers(self) -> dict[str, str]:
        """What a scrape of the service's `/metrics` sends."""
        return {"authorization": f"Bearer {self.metrics_token}"}
