"""Points notices to reporters: one daily digest, so no message's timing betrays a police action.

A ledger change queues (at most) one outbox row per reporter per day, due at a
fixed hour. The row carries only the window it covers; the text is made when it
is sent (`digest_text`), so it includes every change of the day, even those
written after the row was queued.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db import insert_unless_exists
from app.i18n import t
from app.outbox.models import OutboxMessage
from app.rewards.models import PointEntry
from app.rewards.rules import next_digest_at

DIGEST_TEMPLATE = "points_digest"
_outbox = OutboxMessage.__table__


def queue_points_digest(
    conn: Connection, reporter_id: int, *, now: dt.datetime, hour_utc: int
) -> None:
    """Make sure the reporter's next daily digest is queued (a no-op if it already is).

    The outbox's own dedupe key plus ON CONFLICT DO NOTHING makes this safe under
    concurrent awards; queue_message would raise on the second award of the day.
    """
    send_at = next_digest_at(now, hour_utc)
    insert_unless_exists(
        conn,
        _outbox,
        {
            "recipient_kind": "reporter",
            "recipient_id": reporter_id,
            "tip_id": None,  # the digest is about the day, not one tip: retention leaves it be
            "template": DIGEST_TEMPLATE,
            "params": {
                "from": (send_at - dt.timedelta(days=1)).isoformat(),
                "to": send_at.isoformat(),
            },
            "dedupe_key": f"{DIGEST_TEMPLATE}:{reporter_id}:{send_at.date().isoformat()}",
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": send_at,
        },
    )


def digest_text(session: Session, reporter_id: int, params: dict, locale: str = "zh") -> str:
    """Write the digest of one outbox row: the day's change, per tip, and the balance."""
    start = dt.datetime.fromisoformat(params["from"])
    end = dt.datetime.fromisoformat(params["to"])
    e = PointEntry
    rows = session.execute(
        select(e.tip_ref, func.sum(e.points))
        .where(e.reporter_id == reporter_id, e.created_at >= start, e.created_at < end)
        .group_by(e.tip_ref)
        .order_by(e.tip_ref)
    ).all()
    balance = session.scalar(
        select(func.coalesce(func.sum(e.points), 0)).where(e.reporter_id == reporter_id)
    )
    lines = [t("rewards.digest.title", locale)]
    for ref, points in rows:
        if points:
            lines.append(t("rewards.digest.line", locale, ref=ref or "—", points=f"{points:+d}"))
    change = sum(points for _, points in rows)
    lines.append(t("rewards.digest.total", locale, change=f"{change:+d}", balance=balance))
    return "\n".join(lines)
