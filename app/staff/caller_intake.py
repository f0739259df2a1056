"""Tips a staff member types in for a caller on the phone or at the counter.

They go through the one intake function like every other channel; the only
differences are the channel and that the audit trail names the staff member
who entered the tip. The caller stays anonymous and leaves with a receipt.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import DomainError
from app.reports.models import Tip, TipEvent
from app.reports.services import Submission, Upload, submit_tip
from app.reports.storage import MediaStore
from app.staff.scope import Viewer

CALLER_CHANNELS = ("phone", "counter")


def enter_tip_for_caller(
    session: Session,
    settings: Settings,
    store: MediaStore,
    viewer: Viewer,
    *,
    fields: dict,
    channel: str,
    uploads: list[Upload] | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> Submission:
    """Submit an anonymous tip on a caller's behalf; the receipt in the answer is for them."""
    if channel not in CALLER_CHANNELS:
        raise DomainError(
            f"channel must be one of {', '.join(CALLER_CHANNELS)}",
            code="validation_error",
            fields={"channel": [f"one of {', '.join(CALLER_CHANNELS)}"]},
        )
    result = submit_tip(
        session,
        settings,
        store,
        fields={**fields, "anonymous": True},
        uploads=uploads or [],
        channel=channel,
        reporter_id=None,
        idempotency_key=idempotency_key,
        now=now,
    )
    if not result.replayed:
        event = session.scalar(
            select(TipEvent)
            .join(Tip, Tip.id == TipEvent.tip_id)
            .where(Tip.ref == result.ref, TipEvent.action == "submitted")
        )
        if event is not None:
            event.actor_kind = "staff"
            event.actor_id = viewer.staff_id
            event.data = {**(event.data or {}), "entered_by": viewer.staff_id, "for": "caller"}
            session.flush()
    return result
