"""Claiming outbox rows with a lease, shared by every sender (Telegram, partner webhooks).

A claim takes due `pending` rows of some recipient kinds (FOR UPDATE SKIP LOCKED on
PostgreSQL, so concurrent senders take different rows; SQLite writers are serial),
counts the attempt and pushes `next_attempt_at` past a lease, with `last_error =
"sending"`. The sender marks the row after sending; if it dies first, the row becomes
due again when the lease runs out (or at once, through `release_sending`, when the one
sender of those kinds starts), and goes out once more: nothing is lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.outbox.models import OutboxMessage

SENDING = "sending"
_outbox = OutboxMessage.__table__


def _due(kinds: Sequence[str], now: dt.datetime):
    return (
        _outbox.c.status == "pending",
        _outbox.c.next_attempt_at <= now,
        _outbox.c.recipient_kind.in_(kinds),
    )


def lease(session: Session, ids: list[int], *, now: dt.datetime, lease_seconds: float) -> None:
    """Count an attempt on the rows and hold them for the lease."""
    if not ids:
        return
    session.execute(
        update(_outbox)
        .where(_outbox.c.id.in_(ids))
        .values(
            attempts=_outbox.c.attempts + 1,
            next_attempt_at=now + dt.timedelta(seconds=lease_seconds),
            last_error=SENDING,
        )
    )


def claim_due(
    session: Session,
    kinds: Sequence[str],
    *,
    now: dt.datetime | None = None,
    lease_seconds: float,
    limit: int,
    order_by: Sequence = (),
    lease_rows: bool = True,
) -> list:
    """Lock up to `limit` due rows of these kinds (others' locks skipped); lease them if asked.

    The rows come back as read, before the lease: `attempts` is the count before this one.
    """
    now = now or utcnow()
    rows = session.execute(
        select(_outbox)
        .where(*_due(kinds, now))
        .order_by(*order_by, _outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if lease_rows:
        lease(session, [r.id for r in rows], now=now, lease_seconds=lease_seconds)
    return rows


def any_due(session: Session, kinds: Sequence[str], *, now: dt.datetime | None = None) -> bool:
    """Whether some pending row of these kinds is due (a cheap read before the write lock)."""
    found = select(_outbox.c.id).where(*_due(kinds, now or utcnow())).limit(1)
    return session.scalar(found) is not None


def release_sending(
    session: Session, kinds: Sequence[str], *, now: dt.datetime | None = None
) -> int:
    """Make rows a dead sender of these kinds had claimed due again; return how many."""
    result = session.execute(
        update(_outbox)
        .where(
            _outbox.c.status == "pending",
            _outbox.c.last_error == SENDING,
            _outbox.c.recipient_kind.in_(kinds),
        )
        .values(next_attempt_at=now or utcnow())
    )
    return result.rowcount
