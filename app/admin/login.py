"""Sign-in, sign-out and the language switch."""

from __future__ import annotations

from flask import make_response, redirect, render_template, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from app.admin import bp
from app.admin.auth import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    csrf_token,
    current_staff,
    request_locale,
    safe_next,
    set_cookie,
)
from app.i18n import LOCALES, t
from app.people.passwords import MAX_PASSWORD_BYTES
from app.staff.sessions import ABSOLUTE_TIMEOUT, close_session, open_session
from app.staff.signin import PasswordTooLong, SignInRefused, SignInThrottled, sign_in
from app.webapp import db, services

LANG_COOKIE_AGE = 365 * 24 * 3600


class LoginForm(Schema):
    """The sign-in form; lengths are capped before any hashing happens."""

    class Meta:
        unknown = EXCLUDE  # csrf_token and the like

    username = fields.String(load_default="", validate=validate.Length(max=200))
    password = fields.String(load_default="", validate=validate.Length(max=MAX_PASSWORD_BYTES))
    code = fields.String(load_default="", validate=validate.Length(max=20))
    next = fields.String(load_default="", validate=validate.Length(max=2000))


class LocaleForm(Schema):
    """The language switch."""

    class Meta:
        unknown = EXCLUDE

    locale = fields.String(required=True, validate=validate.OneOf(LOCALES))
    next = fields.String(load_default="", validate=validate.Length(max=2000))


_login_form = LoginForm()
_locale_form = LocaleForm()


def _login_page(status: int, *, error: str | None = None, username: str = "", next_: str = ""):
    """Render the sign-in page; the pre-session CSRF cookie is set once and then kept."""
    body = render_template("admin/login.html", error=error, username=username, next=next_ or None)
    response = make_response(body, status)
    if request.cookies.get(LOGIN_CSRF_COOKIE) != csrf_token():
        set_cookie(response, LOGIN_CSRF_COOKIE, csrf_token())
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form, or check it and open a new session."""
    locale = request_locale()
    if request.method == "GET":
        return _login_page(200, next_=request.args.get("next", "")[:2000])
    try:
        form = _login_form.load(request.form)
    except ValidationError as exc:
        if "password" in exc.messages:
            return _login_page(400, error=t("admin.login.too_long", locale))
        return _login_page(400, error=t("admin.login.failed", locale))
    svc = services()
    session = db()
    try:
        staff = sign_in(
            session,
            svc.limiter,
            svc.settings.secret_key,
            username=form["username"],
            password=form["password"],
            totp_code=form["code"],
            client=request.remote_addr or "",
        )
    except PasswordTooLong:
        return _login_page(400, error=t("admin.login.too_long", locale))
    except SignInThrottled as exc:
        response = _login_page(
            429,
            error=t("admin.login.throttled", locale),
            username=form["username"],
            next_=form["next"],
        )
        response.headers["Retry-After"] = str(exc.retry_after or 60)
        return response
    except SignInRefused:
        return _login_page(
            401,
            error=t("admin.login.failed", locale),
            username=form["username"],
            next_=form["next"],
        )
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        close_session(session, old)
    opened = open_session(session, staff)
    response = redirect(safe_next(form["next"]), code=303)
    set_cookie(
        response, SESSION_COOKIE, opened.token, max_age=int(ABSOLUTE_TIMEOUT.total_seconds())
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    return response


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session server-side, so a copy of the cookie is worthless."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        close_session(db(), token)
    response = redirect("/admin/login", code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


@bp.route("/locale", methods=["POST"])
def set_locale():
    """Switch the staff user's language (kept on the user, or in a cookie before sign-in)."""
    try:
        form = _locale_form.load(request.form)
    except ValidationError:
        return redirect(safe_next(None), code=303)
    staff = current_staff()
    if staff is not None:
        staff.locale = form["locale"]
    response = redirect(safe_next(form["next"]), code=303)
    response.set_cookie(
        LANG_COOKIE,
        form["locale"],
        max_age=LANG_COOKIE_AGE,
        path="/admin",
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
    )
    return response
