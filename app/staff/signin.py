"""Staff sign-in: throttled before any hashing, and blind to whether a username exists.

argon2id costs about 0.16 s and 64 MiB per verify, so the throttle is checked
first: 5 attempts a minute per username (a success clears the count) and a
looser limit per client, keyed by a keyed hash of its address so the address is
never stored. An unknown user is verified against a dummy hash, so the answer
and its timing match a wrong password.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import DomainError
from app.people.models import StaffUser
from app.people.passwords import MAX_PASSWORD_BYTES, check_password, hash_password
from app.ratelimit import RateLimiter
from app.security import keyed_hash, same

USER_ATTEMPTS = (5, 60)  # attempts, seconds
CLIENT_ATTEMPTS = (30, 60)
MAX_USERNAME_CHARS = 80
TOTP_STEP_SECONDS = 30
TOTP_DRIFT_STEPS = 1  # accept the neighbouring 30-second codes (phone clocks drift)


class SignInRefused(DomainError):
    """Wrong username, password or code: deliberately one answer for all of them."""

    code = "invalid_credentials"
    status = 401


class SignInThrottled(DomainError):
    """Too many attempts; `retry_after` says when to try again."""

    code = "rate_limited"
    status = 429


class PasswordTooLong(DomainError):
    """A password past the hashing cap, refused before any work is spent on it."""

    code = "password_too_long"
    status = 400


@functools.cache
def _dummy_hash() -> str:
    """A real argon2 hash of a random password, so unknown users cost a real verify."""
    return hash_password(secrets.token_urlsafe(24))


def sign_in(
    session: Session,
    limiter: RateLimiter,
    secret: str,
    *,
    username: str,
    password: str,
    totp_code: str | None = None,
    client: str = "",
    now: dt.datetime | None = None,
) -> StaffUser:
    """Check a sign-in and return the user, or raise SignInRefused / SignInThrottled."""
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(f"a password is at most {MAX_PASSWORD_BYTES} bytes")
    now = now or utcnow()
    username = username.strip()[: MAX_USERNAME_CHARS + 1]
    user_key = "signin:user:" + keyed_hash(secret, "signin-user", username.casefold())
    client_key = "signin:client:" + keyed_hash(secret, "signin-client", client)
    for key, (limit, window) in ((client_key, CLIENT_ATTEMPTS), (user_key, USER_ATTEMPTS)):
        decision = limiter.hit(key, limit, window)
        if not decision.allowed:
            raise SignInThrottled(
                "too many sign-in attempts; wait a minute", retry_after=decision.retry_after
            )

    user = None
    if username and len(username) <= MAX_USERNAME_CHARS:
        user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    stored = user.password_hash if user is not None and user.password_hash else None
    password_ok = check_password(stored or _dummy_hash(), password) and stored is not None
    if user is None or not password_ok or not user.active:
        raise SignInRefused("wrong username or password")
    if user.totp_secret and not _accept_totp(user, totp_code or "", now):
        raise SignInRefused("wrong username or password")
    limiter.reset(user_key)
    user.last_login_at = now
    session.flush()
    return user


def _accept_totp(user: StaffUser, code: str, now: dt.datetime) -> bool:
    """Check an RFC 6238 code, refusing a code (time step) that was already used."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) > 10:
        return False
    totp = pyotp.TOTP(user.totp_secret, interval=TOTP_STEP_SECONDS)
    settings = dict(user.settings or {})
    last_step = settings.get("totp_last_step", -1)
    for drift in range(-TOTP_DRIFT_STEPS, TOTP_DRIFT_STEPS + 1):
        at = now + dt.timedelta(seconds=drift * TOTP_STEP_SECONDS)
        step = totp.timecode(at)
        if step > last_step and same(totp.at(at), code):
            settings["totp_last_step"] = step
            user.settings = settings
            return True
    return False
