"""Bearer-token authentication for reporters."""

from __future__ import annotations

from flask import request

from app.people.errors import Unauthorised
from app.people.models import Reporter
from app.people.services import reporter_for_token
from app.reports.abuse import check_reporter_allowed


def bearer_token() -> str | None:
    """Return the bearer token of the request, or None when there is no Authorization."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorised("use Authorization: Bearer <token>")
    return token.strip()


def current_reporter(session) -> Reporter | None:
    """Return the reporter of the token, None without one; a bad token is refused, not ignored."""
    token = bearer_token()
    if token is None:
        return None
    reporter = reporter_for_token(session, token)
    if reporter is None:
        raise Unauthorised("this token is not valid")
    check_reporter_allowed(session.connection(), reporter.id)  # banned, suspended: 403
    if reporter.status != "active":
        raise Unauthorised("this token is not valid")
    return reporter
