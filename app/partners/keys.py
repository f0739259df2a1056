"""Partner API keys: made and revoked by an admin, stored only as a keyed hash.

A key is `tpk_` + 256 random bits. Only keyed_hash(secret, "partner_key", key)
is kept, so a copy of the database does not hand out working keys; the first
12 characters stay readable (`key_prefix`) so an admin can tell keys apart.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, DomainError
from app.partners.models import Partner
from app.people.services import create_reporter, find_or_create_organisation
from app.security import keyed_hash, new_token

PARTNER_ROLE = "enterprise_guard"
PREFIX_LENGTH = 12
# last_used_at is a hint for admins, not an audit trail: one write a minute is plenty.
LAST_USED_GRANULARITY = dt.timedelta(minutes=1)
_MAX_KEY_LENGTH = 200


class InvalidPartner(DomainError):
    """A partner name or grid path that cannot be used."""

    code = "invalid_partner"
    status = 422


def key_hash(settings: Settings, raw_key: str) -> str:
    """Return the look-up hash of a partner key."""
    return keyed_hash(settings.secret_key, "partner_key", raw_key)


def _clean_grid_paths(grid_paths: list[str] | None) -> list[str] | None:
    """Strip, drop duplicates and trailing slashes; an empty list means the whole city."""
    if not grid_paths:
        return None
    cleaned = [p.strip().strip("/") for p in grid_paths]
    if any(not p for p in cleaned):
        raise InvalidPartner("a grid path is empty", fields={"grid_paths": "empty path"})
    return list(dict.fromkeys(cleaned))


def create_partner(
    session: Session,
    settings: Settings,
    *,
    name: str,
    organisation: str | None = None,
    grid_paths: list[str] | None = None,
    created_by_id: int | None = None,
) -> tuple[Partner, str]:
    """Make a partner and its default reporter; return it with the raw key (shown once)."""
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise InvalidPartner("a partner needs a name of 1-120 characters", fields={"name": name})
    if session.scalar(select(Partner.id).where(Partner.name == name)) is not None:
        raise Conflict(f"a partner named {name!r} exists", code="partner_exists")
    paths = _clean_grid_paths(grid_paths)
    org = find_or_create_organisation(session, organisation.strip()) if organisation else None
    org_id = org.id if org else None
    reporter = create_reporter(session, PARTNER_ROLE, org_id)
    raw = new_token("tpk")
    partner = Partner(
        name=name,
        organisation_id=org_id,
        reporter_id=reporter.id,
        key_hash=key_hash(settings, raw),
        key_prefix=raw[:PREFIX_LENGTH],
        grid_paths=paths,
        created_by_id=created_by_id,
    )
    session.add(partner)
    session.flush()
    return partner, raw


def revoke_partner(session: Session, partner_id: int, *, now: dt.datetime | None = None) -> bool:
    """Revoke a partner's key; False when there is no such partner or it was revoked already."""
    result = session.execute(
        update(Partner)
        .where(Partner.id == partner_id, Partner.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == 1


def authenticate_partner(
    session: Session,
    settings: Settings,
    raw_key: str | None,
    *,
    now: dt.datetime | None = None,
    touch: bool = True,
) -> Partner | None:
    """Return the active partner holding this key, or None.

    The look-up is by keyed hash, so no comparison of the raw key leaks timing.
    With touch, last_used_at is brought up to date (at most once a minute); a
    read-only caller passes touch=False and calls touch_partner in a write transaction.
    """
    if not raw_key or len(raw_key) > _MAX_KEY_LENGTH:
        return None
    partner = session.scalar(select(Partner).where(Partner.key_hash == key_hash(settings, raw_key)))
    if partner is None or partner.revoked_at is not None:
        return None
    if touch and needs_touch(partner, now):
        partner.last_used_at = now or utcnow()
        session.flush()
    return partner


def needs_touch(partner: Partner, now: dt.datetime | None = None) -> bool:
    """Return whether last_used_at is more than a minute old."""
    last = partner.last_used_at
    return last is None or (now or utcnow()) - last >= LAST_USED_GRANULARITY


def touch_partner(session: Session, partner_id: int, *, now: dt.datetime | None = None) -> None:
    """Record a use of the key, unless another request did within the minute."""
    now = now or utcnow()
    session.execute(
        update(Partner)
        .where(
            Partner.id == partner_id,
            (Partner.last_used_at.is_(None))
            | (Partner.last_used_at <= now - LAST_USED_GRANULARITY),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def list_partners(session: Session) -> list[Partner]:
    """Return every partner, revoked ones too, by name."""
    return list(session.scalars(select(Partner).order_by(Partner.name)))


def find_partner(session: Session, name: str) -> Partner | None:
    """Return the partner with this name, or None."""
    return session.scalar(select(Partner).where(Partner.name == (name or "").strip()))
