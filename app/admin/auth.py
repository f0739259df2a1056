"""Who is asking: the session cookie, CSRF checks, and the decorators every admin page uses.

Hooks on the admin blueprint run for every admin view, whichever module holds
it: the first loads the server-side session, the second refuses any state
change without the session's CSRF token (a form field or the X-CSRF-Token
header). Views only decorate themselves with `login_required` or
`role_required(...)`.
"""

from __future__ import annotations

import functools
import secrets
from urllib.parse import urlsplit

from flask import abort, g, redirect, request, url_for

from app.admin import bp
from app.admin.text import from_iso, local_time, preview, show_text
from app.db import unit_of_work, utcnow
from app.i18n import catalogue, normalise_locale, t
from app.people.models import StaffUser
from app.security import same
from app.staff.scope import Viewer, viewer_for
from app.staff.sessions import live_session, touch_session
from app.webapp import READ_METHODS, db, services

SESSION_COOKIE = "tipline_admin"
LOGIN_CSRF_COOKIE = "tipline_login"
LANG_COOKIE = "tipline_lang"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/admin"
# Endpoints that check a pre-session token instead of the session's (there is no session yet).
_PRE_SESSION = frozenset({"admin.login"})


@bp.before_request
def load_session():
    """Attach the signed-in staff user (or None) to the request."""
    g.staff = None
    g.staff_session = None
    if request.endpoint == "admin.static":
        return
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return
    now = utcnow()
    live = live_session(db(), token, now=now)
    if live is None:
        return
    g.staff, g.staff_session = live.staff, live.session
    if live.needs_touch(now):
        if request.method in READ_METHODS:
            # Reads run in a deferred transaction; the touch is a short write of its own.
            with unit_of_work(services().sessions) as session:
                touch_session(session, live.session.id, now=now)
        else:
            touch_session(db(), live.session.id, now=now)


@bp.before_request
def check_csrf():
    """Refuse a state change that does not carry this session's CSRF token (403)."""
    if request.method in READ_METHODS:
        return
    if request.endpoint in _PRE_SESSION:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    else:
        expected = g.staff_session.csrf_token if g.staff_session is not None else None
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    if not expected or not sent or not same(sent, expected):
        abort(403, description=t("admin.error.csrf", request_locale()))


@bp.context_processor
def template_helpers() -> dict:
    """Give every admin template its locale, messages, user and CSRF token."""
    locale = request_locale()
    return {
        "_": _translator(locale),
        "_or": _translator(locale, fallback=True),
        "locale": locale,
        "staff": current_staff(),
        "csrf_token": csrf_token(),
    }


bp.add_app_template_filter(show_text, "show_text")
bp.add_app_template_filter(preview, "preview")
bp.add_app_template_filter(local_time, "local_time")
bp.add_app_template_filter(from_iso, "fromiso")


def _translator(locale: str, *, fallback: bool = False):
    """Return `_` for templates; with fallback, `_or(key, text)` shows text for unknown keys."""
    if fallback:

        def translate_or(key: str, default: str, **params) -> str:
            return t(key, locale, **params) if key in catalogue() else default

        return translate_or

    def translate(key: str, **params) -> str:
        return t(key, locale, **params)

    return translate


def current_staff() -> StaffUser | None:
    """Return the signed-in staff user of this request, or None."""
    return g.get("staff")


def current_viewer() -> Viewer:
    """Return the signed-in user's scope, resolved once per request."""
    if "viewer" not in g:
        staff = current_staff()
        if staff is None:
            abort(401)
        g.viewer = viewer_for(db(), staff)
    return g.viewer


def csrf_token() -> str:
    """Return the token forms and fetch() calls must send back (the pre-session one at login)."""
    if g.get("staff_session") is not None:
        return g.staff_session.csrf_token
    if "login_csrf" not in g:
        g.login_csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    return g.login_csrf


def request_locale() -> str:
    """Return the staff user's language, or the one chosen on the sign-in page (zh default)."""
    staff = current_staff()
    if staff is not None:
        return normalise_locale(staff.locale)
    return normalise_locale(request.args.get("lang") or request.cookies.get(LANG_COOKIE))


def login_required(view):
    """Let signed-in staff through; send others to the sign-in page (401 for JSON)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_staff() is None:
            if wants_json():
                abort(401)
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def role_required(*roles: str):
    """Let signed-in staff of these roles through; others get 403."""

    def decorate(view):
        @functools.wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_staff().role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def wants_json() -> bool:
    """Say whether the caller is a script (fetch) rather than a page load."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return request.path.endswith(".json") or best == "application/json"


def safe_next(target: str | None) -> str:
    """Return a post-sign-in destination inside the admin, never another site."""
    default = url_for("admin.queue")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(COOKIE_PATH + "/"):
        return default
    if "\\" in target or target.startswith("//"):
        return default
    return target


def set_cookie(response, name: str, value: str, *, max_age: int | None = None) -> None:
    """Set an admin cookie: HttpOnly, SameSite=Lax, Secure over https, admin paths only."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
    )
