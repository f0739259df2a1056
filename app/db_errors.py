"""The database being away is one passing condition: 503 + Retry-After, never a traceback.

A restart, a failover, a dropped connection or an exhausted pool is not a bug of ours
and not the client's fault; the same request sent again shortly will do (tests/system/
test_db_restart.py). The rule that tells such an error from a real one, and the answer,
live here, for the error handlers (app/api/errors.py) and the commit after each request
(app/webapp.py) alike. The answer comes in the envelope of the surface that was asked:
each blueprint's own handler for domain errors renders it (the admin's HTML page or its
JSON for scripts, Open311's errors list in JSON or XML), the app's renders the API's JSON.
"""

from __future__ import annotations

import logging

from flask import Response, current_app
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.errors import Unavailable

log = logging.getLogger("tipline.web")

RETRY_AFTER_S = 2


def database_unavailable(exc: BaseException) -> bool:
    """Say whether an error means the database is away for now, rather than a bug or bad input.

    OperationalError covers a refused or broken connection, a restarting server, SQLite's
    "database is locked" and PostgreSQL's serialization failures: all pass on a retry.
    """
    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def unavailable_response() -> Response:
    """Answer 503 with Retry-After in the envelope of the surface this request reached."""
    refusal = Unavailable("temporarily unavailable, please retry", retry_after=RETRY_AFTER_S)
    try:
        response = current_app.make_response(current_app.handle_user_exception(refusal))
    except Exception as exc:
        # The surface's own page needed the database itself: the plain envelope does not.
        if not database_unavailable(exc):
            log.exception("rendering the 503 page failed")
        from app.api.errors import error_response  # it imports this module

        response = error_response(503, refusal.code, refusal.message)
    # A page that does not pass Retry-After on (the admin's) still says when to retry.
    response.headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    return response
