"""Domain errors about reporters, invites and staff."""

from __future__ import annotations

from app.errors import DomainError


class InvalidInvite(DomainError):
    """The invite code is unknown, used or expired (indistinguishably)."""

    code = "invalid_invite"
    status = 422


class Unauthorised(DomainError):
    """A bearer token was sent but is not valid."""

    code = "unauthorised"
    status = 401


class UserExists(DomainError):
    """A staff user with that name exists already."""

    code = "user_exists"
    status = 409
