"""Reporters, invites, tokens and staff users: creation and authentication."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.identifiers import CROCKFORD, new_pseudonym
from app.people.errors import InvalidInvite, UserExists
from app.people.models import (
    REPORTER_ROLES,
    STAFF_ROLES,
    Invite,
    Organisation,
    Reporter,
    ReporterToken,
    StaffScope,
    StaffToken,
    StaffUser,
)
from app.people.passwords import hash_password
from app.security import keyed_hash, new_token, token_hash

INVITE_TTL = dt.timedelta(days=90)
_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V", "-": None, " ": None})


def _normalise_invite(code: str) -> str:
    """Uppercase, drop separators and map Crockford look-alikes, so typed codes match."""
    return (code or "").strip().upper().translate(_ALIASES)


def find_or_create_organisation(
    session: Session, name: str, kind: str = "enterprise"
) -> Organisation:
    """Return the organisation with this name, creating it when new."""
    org = session.scalar(select(Organisation).where(Organisation.name == name))
    if org is None:
        org = Organisation(name=name, kind=kind)
        session.add(org)
        session.flush()
    return org


def create_reporter(
    session: Session, role: str, organisation_id: int | None = None, locale: str = "zh"
) -> Reporter:
    """Make a reporter with a fresh pseudonym, lengthening it if short ones collide."""
    if role not in REPORTER_ROLES:
        raise ValueError(f"unknown reporter role {role!r}")
    for attempt in range(12):
        pseudonym = new_pseudonym(4 + attempt // 4)
        if session.scalar(select(Reporter.id).where(Reporter.pseudonym == pseudonym)) is None:
            break
    reporter = Reporter(
        pseudonym=pseudonym, role=role, organisation_id=organisation_id, locale=locale
    )
    session.add(reporter)
    session.flush()
    return reporter


def create_invites(
    session: Session,
    secret: str,
    role: str,
    *,
    organisation_id: int | None = None,
    count: int = 1,
    now: dt.datetime | None = None,
) -> list[str]:
    """Make one-use invite codes; only their keyed hashes are stored."""
    if role not in REPORTER_ROLES:
        raise ValueError(f"unknown reporter role {role!r}")
    now = now or utcnow()
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(CROCKFORD) for _ in range(12))
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
        session.add(
            Invite(
                code_hash=keyed_hash(secret, "invite", raw),
                role=role,
                organisation_id=organisation_id,
                created_at=now,
                expires_at=now + INVITE_TTL,
            )
        )
    session.flush()
    return codes


def redeem_invite(
    session: Session, secret: str, code: str, *, now: dt.datetime | None = None
) -> tuple[Reporter, str]:
    """Turn an unused invite into a reporter and a device token (returned once, kept hashed)."""
    now = now or utcnow()
    invite = session.scalar(
        select(Invite)
        .where(Invite.code_hash == keyed_hash(secret, "invite", _normalise_invite(code)))
        .with_for_update()
    )
    if (
        invite is None
        or invite.used_at is not None
        or (invite.expires_at is not None and invite.expires_at < now)
    ):
        raise InvalidInvite("this invite code is not valid")
    reporter = create_reporter(session, invite.role, invite.organisation_id)
    invite.used_at = now
    invite.used_by_id = reporter.id
    return reporter, issue_reporter_token(session, reporter.id)


def issue_reporter_token(session: Session, reporter_id: int) -> str:
    """Make a bearer token for a reporter."""
    token = new_token("tpr")
    session.add(ReporterToken(reporter_id=reporter_id, token_hash=token_hash(token)))
    session.flush()
    return token


def reporter_for_token(session: Session, token: str) -> Reporter | None:
    """Return the active reporter holding this token, or None."""
    return session.scalar(
        select(Reporter)
        .join(ReporterToken)
        .where(ReporterToken.token_hash == token_hash(token), ReporterToken.revoked_at.is_(None))
    )


def create_staff_user(
    session: Session,
    username: str,
    role: str,
    *,
    password: str | None = None,
    grids: list[str] = (),
) -> StaffUser:
    """Make a staff user scoped to grid codes (any level; a town covers its subtree)."""
    if role not in STAFF_ROLES:
        raise ValueError(f"unknown staff role {role!r}")
    if session.scalar(select(StaffUser.id).where(StaffUser.username == username)):
        raise UserExists(f"staff user {username!r} exists")
    user = StaffUser(
        username=username,
        role=role,
        password_hash=hash_password(password) if password else None,
        scopes=[StaffScope(grid_code=code) for code in dict.fromkeys(grids)],
    )
    session.add(user)
    session.flush()
    return user


def issue_staff_token(session: Session, username: str) -> str:
    """Make a staff API token for an existing, active user."""
    user = session.scalar(
        select(StaffUser).where(StaffUser.username == username, StaffUser.active.is_(True))
    )
    if user is None:
        raise LookupError(f"no active staff user {username!r}")
    token = new_token("tps")
    session.add(StaffToken(staff_id=user.id, token_hash=token_hash(token)))
    session.flush()
    return token
