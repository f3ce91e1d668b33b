"""Authentication building blocks with no knowledge of HTTP or SQL: password hashes, access
and refresh tokens, login rate limits. The API wires them to requests (`app.api.auth`)."""
