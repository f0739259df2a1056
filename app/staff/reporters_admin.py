"""Reporters as staff see them: pseudonyms, role, organisation, trust, status, their tips.

Only Tipline's own reporters are listed, never anyone a tip is about. Staff
see a reporter through the tips they may see: a supervisor scoped to a town
lists the reporters with tips there, counted there; admins and city
supervisors list everyone. The channel identity behind a pseudonym is shown
to admins only, for a written reason, and every look is in the audit log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.errors import DomainError, NotFound
from app.people.models import (
    REPORTER_ROLES,
    AuditEntry,
    Organisation,
    Reporter,
    ReporterIdentity,
)
from app.reports.abuse import ban_reporter, suspend_reporter, unban_reporter
from app.reports.models import Tip
from app.staff.scope import Viewer, visible_condition

REPORTER_STATUSES = ("active", "suspended", "banned")
# approve: make active again (from suspended or banned); the others block every channel.
STATUS_ACTIONS = ("approve", "suspend", "ban")
MANAGING_ROLES = ("admin", "supervisor")
MIN_REASON_CHARS = 4  # "涉嫌诬告" is a reason; "x" is not
MAX_REASON_CHARS = 1000
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class ReporterRow:
    """One reporter in the list; counts cover the tips the viewer may see only."""

    id: int
    pseudonym: str
    role: str
    organisation: str | None
    trust_score: float
    status: str
    created_at: dt.datetime
    tips: int
    open_tips: int
    confirmed: int
    malicious: int
    last_tip_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class RevealedIdentity:
    """A channel account behind a pseudonym, shown once to an admin."""

    channel: str
    address: str
    since: dt.datetime


def _managing(viewer: Viewer) -> None:
    # Grid workers handle tips, not the people who send them: the page does not exist for them.
    if viewer.role not in MANAGING_ROLES:
        raise NotFound("no such page")


def _tip_counts(viewer: Viewer):
    """Per reporter: visible tips, open ones, confirmed and malicious ones, the latest."""
    return (
        select(
            Tip.reporter_id.label("reporter_id"),
            func.count().label("tips"),
            func.sum(case((Tip.is_open.is_(True), 1), else_=0)).label("open_tips"),
            func.sum(case((Tip.outcome == "confirmed", 1), else_=0)).label("confirmed"),
            func.sum(case((Tip.outcome == "malicious", 1), else_=0)).label("malicious"),
            func.max(Tip.received_at).label("last_tip_at"),
        )
        .where(Tip.reporter_id.is_not(None), visible_condition(viewer))
        .group_by(Tip.reporter_id)
        .subquery()
    )


def _rows_query(viewer: Viewer):
    counts = _tip_counts(viewer)
    query = select(
        Reporter,
        Organisation.name,
        func.coalesce(counts.c.tips, 0),
        func.coalesce(counts.c.open_tips, 0),
        func.coalesce(counts.c.confirmed, 0),
        func.coalesce(counts.c.malicious, 0),
        counts.c.last_tip_at,
    ).outerjoin(Organisation, Organisation.id == Reporter.organisation_id)
    if viewer.sees_all:
        return query.outerjoin(counts, counts.c.reporter_id == Reporter.id)
    # Everyone else knows a reporter only through a tip they may see.
    return query.join(counts, counts.c.reporter_id == Reporter.id)


def _row(found) -> ReporterRow:
    reporter, org, tips, open_tips, confirmed, malicious, last_tip_at = found
    return ReporterRow(
        id=reporter.id,
        pseudonym=reporter.pseudonym,
        role=reporter.role,
        organisation=org,
        trust_score=reporter.trust_score,
        status=reporter.status,
        created_at=reporter.created_at,
        tips=int(tips),
        open_tips=int(open_tips),
        confirmed=int(confirmed),
        malicious=int(malicious),
        last_tip_at=last_tip_at,
    )


def list_reporters(
    session: Session,
    viewer: Viewer,
    *,
    status: str | None = None,
    role: str | None = None,
    query: str = "",
    limit: int = PAGE_SIZE,
    offset: int = 0,
) -> list[ReporterRow]:
    """Return reporters the viewer may know of, blocked ones and the newest first."""
    _managing(viewer)
    stmt = _rows_query(viewer)
    if status in REPORTER_STATUSES:
        stmt = stmt.where(Reporter.status == status)
    if role in REPORTER_ROLES:
        stmt = stmt.where(Reporter.role == role)
    query = (query or "").strip().upper()
    if query:
        stmt = stmt.where(
            Reporter.pseudonym.startswith(query if query.startswith("R-") else "R-" + query)
        )
    stmt = (
        stmt.order_by(case((Reporter.status == "active", 1), else_=0), Reporter.id.desc())
        .limit(max(1, min(limit, 500)))
        .offset(max(0, offset))
    )
    return [_row(r) for r in session.execute(stmt).all()]


def get_reporter(session: Session, viewer: Viewer, pseudonym: str) -> ReporterRow:
    """Return one reporter the viewer may know of, or NotFound."""
    _managing(viewer)
    found = session.execute(
        _rows_query(viewer).where(Reporter.pseudonym == (pseudonym or "").strip().upper())
    ).first()
    if found is None:
        raise NotFound("no such reporter")
    return _row(found)


def change_reporter_status(
    session: Session, viewer: Viewer, pseudonym: str, action: str, *, reason: str | None
) -> ReporterRow:
    """Approve, suspend or ban a reporter the viewer may know of (audited by the abuse service)."""
    row = get_reporter(session, viewer, pseudonym)
    if action not in STATUS_ACTIONS:
        raise DomainError(
            f"action must be one of {', '.join(STATUS_ACTIONS)}",
            code="validation_error",
            fields={"action": [f"one of {', '.join(STATUS_ACTIONS)}"]},
        )
    reason = (reason or "").strip()[:MAX_REASON_CHARS] or None
    if action == "approve":
        unban_reporter(session, row.id, actor_id=viewer.staff_id, reason=reason)
    elif action == "suspend":
        suspend_reporter(session, row.id, actor_id=viewer.staff_id, reason=reason or "")
    else:
        ban_reporter(session, row.id, actor_id=viewer.staff_id, reason=reason or "")
    return get_reporter(session, viewer, pseudonym)


def reveal_identity(
    session: Session, viewer: Viewer, pseudonym: str, *, reason: str
) -> list[RevealedIdentity]:
    """Return the channel accounts behind a pseudonym to an admin, and log who looked and why.

    To anyone else the reporter, and this action, do not exist (NotFound).
    """
    if viewer.role != "admin":
        raise NotFound("no such reporter")
    reporter = session.scalar(
        select(Reporter).where(Reporter.pseudonym == (pseudonym or "").strip().upper())
    )
    if reporter is None:
        raise NotFound("no such reporter")
    reason = (reason or "").strip()
    if len("".join(reason.split())) < MIN_REASON_CHARS:
        raise DomainError(
            "write down why the identity is needed",
            code="reason_required",
            fields={"reason": [f"at least {MIN_REASON_CHARS} characters"]},
        )
    identities = session.scalars(
        select(ReporterIdentity)
        .where(ReporterIdentity.reporter_id == reporter.id)
        .order_by(ReporterIdentity.created_at, ReporterIdentity.id)
    ).all()
    session.add(
        AuditEntry(
            staff_id=viewer.staff_id,
            action="reveal_identity",
            target_kind="reporter",
            target_id=reporter.id,
            reason=reason[:MAX_REASON_CHARS],
            # Which channels were shown, never the identities themselves.
            data={"pseudonym": reporter.pseudonym, "channels": [i.channel for i in identities]},
        )
    )
    session.flush()
    return [RevealedIdentity(i.channel, i.external_address, i.created_at) for i in identities]
