"""Telegram identities: reporters found by a keyed hash of their user id; staff chats by code.

The Telegram user id is never stored in the clear: ReporterIdentity keeps
keyed_hash(secret, "telegram", user_id) for look-up, and the chat id only
because replies must reach it. Staff link their own chat with a one-time code
(`tipline users link-telegram USERNAME`), kept hashed until it is used.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import DomainError
from app.identifiers import CROCKFORD
from app.people.models import Reporter, ReporterIdentity, ReporterToken, StaffUser
from app.people.services import create_reporter, redeem_invite
from app.security import keyed_hash, token_hash

CHANNEL = "telegram"
_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V", "-": None, " ": None})


class RegistrationClosed(DomainError):
    """Self-registration is off: a reporter needs an invite."""

    code = "invite_required"
    status = 403


def telegram_hash(secret: str, user_id: int) -> str:
    """Return the look-up hash of a Telegram user id."""
    return keyed_hash(secret, CHANNEL, str(user_id))


def find_telegram_reporter(session: Session, secret: str, user_id: int) -> Reporter | None:
    """Return the reporter bound to this Telegram user, or None."""
    return session.scalar(
        select(Reporter)
        .join(ReporterIdentity, ReporterIdentity.reporter_id == Reporter.id)
        .where(
            ReporterIdentity.channel == CHANNEL,
            ReporterIdentity.external_hash == telegram_hash(secret, user_id),
        )
    )


def register_telegram_reporter(
    session: Session,
    secret: str,
    *,
    user_id: int,
    chat_id: int,
    invite_code: str | None,
    allow_citizens: bool,
    locale: str = "zh",
    now: dt.datetime | None = None,
) -> Reporter:
    """Bind a Telegram user to a new reporter: the invite's role, else a citizen if allowed.

    Raises InvalidInvite for a bad code and RegistrationClosed without one when
    citizens may not register themselves.
    """
    now = now or utcnow()
    if invite_code:
        reporter, token = redeem_invite(session, secret, invite_code, now=now)
        # The invite also made a device token; the bot has no use for it, so it dies at once.
        session.execute(
            update(ReporterToken)
            .where(ReporterToken.token_hash == token_hash(token))
            .values(revoked_at=now)
        )
    elif allow_citizens:
        reporter = create_reporter(session, "citizen")
    else:
        raise RegistrationClosed("an invite is needed to register")
    reporter.locale = locale
    session.add(
        ReporterIdentity(
            reporter_id=reporter.id,
            channel=CHANNEL,
            external_hash=telegram_hash(secret, user_id),
            external_address=str(chat_id),
        )
    )
    session.flush()
    return reporter


def reporter_chats(session: Session, reporter_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Return {reporter id: (chat id, locale)} for reporters reachable on Telegram."""
    if not reporter_ids:
        return {}
    rows = session.execute(
        select(ReporterIdentity.reporter_id, ReporterIdentity.external_address, Reporter.locale)
        .join(Reporter, Reporter.id == ReporterIdentity.reporter_id)
        .where(ReporterIdentity.channel == CHANNEL, ReporterIdentity.reporter_id.in_(reporter_ids))
    )
    return {r.reporter_id: (r.external_address, r.locale) for r in rows}


def _normalise_code(code: str) -> str:
    return (code or "").strip().upper().translate(_ALIASES)


def issue_staff_link_code(session: Session, secret: str, username: str) -> str:
    """Make a one-time code a staff member sends to the bot as `/start CODE` to link their chat."""
    user = session.scalar(
        select(StaffUser).where(StaffUser.username == username, StaffUser.active.is_(True))
    )
    if user is None:
        raise LookupError(f"no active staff user {username!r}")
    raw = "".join(secrets.choice(CROCKFORD) for _ in range(16))
    user.telegram_link_hash = keyed_hash(secret, "telegram_link", raw)
    session.flush()
    return "S" + raw  # the S keeps staff codes apart from 12-character invites


def link_staff_chat(session: Session, secret: str, code: str, chat_id: int) -> StaffUser | None:
    """Link the chat to the staff user holding this code (used up), or return None."""
    normalised = _normalise_code(code)
    if len(normalised) != 17 or not normalised.startswith("S"):
        return None
    user = session.scalar(
        select(StaffUser)
        .where(
            StaffUser.telegram_link_hash == keyed_hash(secret, "telegram_link", normalised[1:]),
            StaffUser.active.is_(True),
        )
        .with_for_update()
    )
    if user is None:
        return None
    # One chat belongs to one staff user: a chat linked before moves to the new holder.
    session.execute(
        update(StaffUser)
        .where(StaffUser.telegram_chat_id == str(chat_id), StaffUser.id != user.id)
        .values(telegram_chat_id=None)
    )
    user.telegram_chat_id = str(chat_id)
    user.telegram_link_hash = None
    session.flush()
    return user


def staff_for_chat(session: Session, chat_id: int) -> StaffUser | None:
    """Return the active staff user whose linked chat this is, or None."""
    return session.scalar(
        select(StaffUser).where(
            StaffUser.telegram_chat_id == str(chat_id), StaffUser.active.is_(True)
        )
    )


def staff_chats(session: Session, staff_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Return {staff id: (chat id, locale)} for active staff with a linked chat."""
    if not staff_ids:
        return {}
    rows = session.execute(
        select(StaffUser.id, StaffUser.telegram_chat_id, StaffUser.locale).where(
            StaffUser.id.in_(staff_ids),
            StaffUser.active.is_(True),
            StaffUser.telegram_chat_id.is_not(None),
        )
    )
    return {r.id: (r.telegram_chat_id, r.locale) for r in rows}
