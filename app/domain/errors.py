"""Domain outcomes that are not successes; the API decides what each means in HTTP
(`app.api.problems`)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors a repository reports to its caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(DomainError):
    """The addressed record does not exist."""


class ConflictError(DomainError):
    """The request conflicts with stored state (a taken username, a reused key)."""


class ForbiddenError(DomainError):
    """The caller may not do this (a sender who is not a member of the chat)."""
