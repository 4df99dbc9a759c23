"""Domain errors. Views and the API map them to status codes in one place each."""

from __future__ import annotations


class DomainError(Exception):
    """Base class; ``message`` is safe to show to the user."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PermissionDenied(DomainError):
    """A member whose role does not allow the action (HTTP 403). Non-members get 404."""

    status_code = 403

    def __init__(self, message: str = "Your role does not allow this.") -> None:
        super().__init__(message)


class InvalidTransition(DomainError):
    """The object is not in a state that allows the move (HTTP 409)."""

    status_code = 409


class Conflict(DomainError):
    """Someone else changed the object first (HTTP 409); ``current`` describes it now."""

    status_code = 409

    def __init__(self, message: str, *, current: dict | None = None) -> None:
        super().__init__(message)
        self.current = current or {}
