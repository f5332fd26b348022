"""Domain errors carry their HTTP status and a message a user can act on."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, object]:
        detail: dict[str, object] = {"msg": self.message, "type": type(self).__name__}
        if self.field:
            detail["loc"] = ["body", *self.field.split(".")]
        return {"detail": [detail]}


class InvalidInput(DomainError):
    status_code = 422


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Forbidden(DomainError):
    status_code = 403


class TooManyRequests(DomainError):
    status_code = 429
