"""Redaction of secrets from URLs and error text before they reach logs or responses."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL_IN_TEXT = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"]+", re.IGNORECASE)
_PASSWORD_KV = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***` (the user name is kept)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    # The hosts as written: a libpq host list (`h1:5432,h2:5432`) has no single port.
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    netloc = f"{user}:***@{hosts}"
    query = _PASSWORD_KV.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove URLs, `password=...` pairs and any of `secrets` from free text."""
    cleaned = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)
    cleaned = _PASSWORD_KV.sub(r"\1***", cleaned)
    for secret in secrets:
        if secret:
            cleaned = cleaned.replace(secret, "***")
    return cleaned
