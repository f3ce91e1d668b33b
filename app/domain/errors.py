"""Domain outcomes that are not successes; the API maps each to an HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors a repository reports to its caller."""

    status_code = 400
    title = "Bad Request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(DomainError):
    """The addressed record does not exist."""

    status_code = 404
    title = "Not Found"


class ConflictError(DomainError):
    """The request conflicts with stored state (a taken username, a reused key)."""

    status_code = 409
    title = "Conflict"


class ForbiddenError(DomainError):
    """The caller may not do this (a sender who is not a member of the chat)."""

    status_code = 403
    title = "Forbidden"
