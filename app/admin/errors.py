"""Error pages of the admin: HTML for people, the API's JSON shape for fetch() calls."""

from __future__ import annotations

import logging

from flask import render_template
from werkzeug.exceptions import HTTPException

from app.admin import bp
from app.admin.auth import request_locale, wants_json
from app.api.errors import error_response
from app.errors import DomainError
from app.i18n import t

log = logging.getLogger("tipline.admin")

_TITLES = {
    400: "bad_request",
    401: "unauthorised",
    403: "forbidden",
    404: "not_found",
    405: "not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "throttled",
}


def _page(status: int, code: str, message: str, fields: dict | None = None):
    if wants_json():
        return error_response(status, code, message, fields)
    locale = request_locale()
    title = t("admin.error." + _TITLES.get(status, "other"), locale)
    return render_template("admin/error.html", status=status, title=title, message=message), status


@bp.errorhandler(DomainError)
def domain_error(exc: DomainError):
    """Show a refusal (not found, conflict, invalid transition...) in the page's language."""
    message = exc.message
    if exc.status == 404:
        message = t("admin.error.not_found_text", request_locale())
    return _page(exc.status, exc.code, message, exc.fields)


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    """Show an HTTP error (CSRF 403, 404, 413 ...) without internals."""
    status = exc.code or 500
    message = exc.description or ""
    if status == 404:
        message = t("admin.error.not_found_text", request_locale())
    elif status == 413:
        message = t("admin.error.too_large_text", request_locale())
    return _page(status, _TITLES.get(status, "error"), message)
