"""Server-side staff sessions: the cookie holds a random token, the database its hash.

Because the session lives in a row, logout, disabling a user and a role change
end it at once in every worker: the row is revoked, or the user's
`session_epoch` moves past the one the session was opened with.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.people.models import STAFF_ROLES, StaffSession, StaffToken, StaffUser
from app.security import new_token, token_hash

# A shift is about 8-12 hours; an unattended screen signs itself out after two idle hours.
IDLE_TIMEOUT = dt.timedelta(hours=2)
ABSOLUTE_TIMEOUT = dt.timedelta(hours=12)
# last_seen_at is written at most this often, so browsing stays (mostly) read-only.
TOUCH_INTERVAL = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A new session: the cookie token (shown once, kept hashed) and its CSRF token."""

    id: int
    token: str
    csrf_token: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A valid session and its user, as the request sees them."""

    session: StaffSession
    staff: StaffUser

    def needs_touch(self, now: dt.datetime) -> bool:
        """Say whether last_seen_at is old enough to be worth a write."""
        return now - self.session.last_seen_at >= TOUCH_INTERVAL


def open_session(
    session: Session, staff: StaffUser, *, now: dt.datetime | None = None
) -> OpenedSession:
    """Start a fresh session for a signed-in user (a new token on every sign-in)."""
    now = now or utcnow()
    token = new_token("tpa")
    row = StaffSession(
        token_hash=token_hash(token),
        staff_id=staff.id,
        epoch=staff.session_epoch,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + ABSOLUTE_TIMEOUT,
    )
    session.add(row)
    session.flush()
    return OpenedSession(row.id, token, row.csrf_token, row.expires_at)


def live_session(
    session: Session, token: str, *, now: dt.datetime | None = None
) -> LiveSession | None:
    """Return the session of a cookie token if it is still valid, else None."""
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    found = session.execute(
        select(StaffSession, StaffUser)
        .join(StaffUser, StaffUser.id == StaffSession.staff_id)
        .where(StaffSession.token_hash == token_hash(token))
    ).first()
    if found is None:
        return None
    row, staff = found
    if (
        row.revoked_at is not None
        or row.expires_at <= now
        or row.last_seen_at + IDLE_TIMEOUT <= now
        or not staff.active
        or row.epoch != staff.session_epoch
    ):
        return None
    return LiveSession(row, staff)


def touch_session(session: Session, session_id: int, *, now: dt.datetime | None = None) -> None:
    """Record activity, which keeps the session from idling out."""
    session.execute(
        update(StaffSession)
        .where(StaffSession.id == session_id)
        .values(last_seen_at=now or utcnow())
    )


def close_session(session: Session, token: str, *, now: dt.datetime | None = None) -> None:
    """Revoke the session of a cookie token (logout); unknown tokens are ignored."""
    if not token or len(token) > 200:
        return
    session.execute(
        update(StaffSession)
        .where(StaffSession.token_hash == token_hash(token), StaffSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


def end_all_sessions(session: Session, staff: StaffUser, *, now: dt.datetime | None = None) -> None:
    """End every session of a user at once: bump the epoch and revoke the rows."""
    staff.session_epoch = (staff.session_epoch or 0) + 1
    session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff.id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    session.flush()


def staff_for_api_token(session: Session, token: str) -> StaffUser | None:
    """Return the active staff user holding an unrevoked API token, or None."""
    if not token or len(token) > 200:
        return None
    return session.scalar(
        select(StaffUser)
        .join(StaffToken, StaffToken.staff_id == StaffUser.id)
        .where(
            StaffToken.token_hash == token_hash(token),
            StaffToken.revoked_at.is_(None),
            StaffUser.active.is_(True),
        )
    )


def set_staff_active(
    session: Session, staff_id: int, active: bool, *, now: dt.datetime | None = None
) -> StaffUser:
    """Enable or disable a staff user; disabling ends their sessions at once."""
    staff = _staff(session, staff_id)
    if staff.active and not active:
        end_all_sessions(session, staff, now=now)
    staff.active = active
    session.flush()
    return staff


def change_staff_role(
    session: Session, staff_id: int, role: str, *, now: dt.datetime | None = None
) -> StaffUser:
    """Change a staff user's role; their sessions end, so they sign in again under the new one."""
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown staff role {role!r}")
    staff = _staff(session, staff_id)
    if staff.role != role:
        end_all_sessions(session, staff, now=now)
        staff.role = role
        session.flush()
    return staff


def _staff(session: Session, staff_id: int) -> StaffUser:
    staff = session.get(StaffUser, staff_id)
    if staff is None:
        raise LookupError(f"no staff user {staff_id}")
    return staff
