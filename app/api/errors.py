"""One error shape for the whole API: {"code", "message", "errors"}; never a traceback."""

from __future__ import annotations

import errno
import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from app.db_errors import database_unavailable, unavailable_response
from app.errors import DomainError
from app.reports.storage import StorageFull

log = logging.getLogger("tipline.api")

# What a disk says when it is full, over quota or over the process's file-size limit.
_DISK_REFUSALS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorised",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, errors: dict | None = None, retry_after: int | None = None
):
    """Build the JSON error response."""
    resp = jsonify(code=code, message=message, errors=errors or {})
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def register_error_handlers(app: Flask) -> None:
    """Map domain errors, HTTP errors and database outages to JSON, where no blueprint does."""

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.retry_after)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = _HTTP_CODES.get(exc.code or 500, "error")
        messages = (getattr(exc, "data", None) or {}).get("messages")
        if messages:  # webargs puts field errors under their location (json, query, ...)
            errors = {}
            for location, found in messages.items():
                # A body that is not JSON at all is a list of messages, not a dict of fields.
                errors.update(found if isinstance(found, dict) else {location: found})
            return error_response(exc.code, code, "some fields are not valid", errors)
        return error_response(exc.code or 500, code, exc.description or code)

    @app.errorhandler(DataError)
    def value_refused(exc: DataError):
        # A value the database cannot hold (NUL in text, a number beyond the column):
        # bad input that validation let through, refused like any other; nothing stored.
        log.warning("value refused by the database: %s", type(exc.orig).__name__)
        return error_response(400, "invalid_value", "a value in this request cannot be stored")

    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)
    def database_error(exc: DBAPIError | PoolTimeout):
        if database_unavailable(exc):
            log.warning("database unavailable: %s", type(exc).__name__)
            return unavailable_response()
        log.error("database error: %s", type(exc.orig).__name__)
        return error_response(500, "internal_error", "internal error")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled %s", type(exc).__name__)
        return error_response(500, "internal_error", "internal error")

    @app.errorhandler(OSError)
    def disk_refused(exc: OSError):
        # Werkzeug spools a large upload to a temp file: a full disk there is no bug of
        # ours and no fault of the client's, but a passing condition (tests/system).
        if exc.errno not in _DISK_REFUSALS:
            return unexpected(exc)
        log.warning("disk refused a write: %s", errno.errorcode.get(exc.errno, "?"))
        return domain_error(StorageFull())

    @app.errorhandler(MemoryError)
    def out_of_memory(exc: MemoryError):
        log.warning("out of memory while handling a request")
        return unavailable_response()
