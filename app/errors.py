"""The base of every domain error; adapters map `code` to a status or a bot reply."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the user can act on: a machine code, a message and optional field errors."""

    code = "invalid"
    status = 422

    def __init__(
        self,
        message: str = "",
        *,
        fields: dict | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message or self.code)
        self.message = message or self.code
        self.fields = fields or {}
        if code:
            self.code = code
        self.retry_after = retry_after


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""

    code = "not_found"
    status = 404


class Conflict(DomainError):
    """The request clashes with what is already stored."""

    code = "conflict"
    status = 409


class Unavailable(DomainError):
    """A passing condition (busy decoder, full disk, database restart): retry later."""

    code = "unavailable"
    status = 503
