"""Queue messages in the caller's transaction; the bot process sends them."""

from __future__ import annotations

from sqlalchemy import JSON, Integer, String, bindparam, cast, insert, literal, select
from sqlalchemy.orm import Session

from app.db import UTCDateTime, utcnow
from app.outbox.models import OutboxMessage
from app.people.models import StaffScope, StaffUser

_outbox = OutboxMessage.__table__
_staff, _scopes = StaffUser.__table__, StaffScope.__table__
_INSERT = insert(_outbox)
# One statement queues a message to every active grid worker of a grid.
_TO_GRID_WORKERS = insert(_outbox).from_select(
    [
        "recipient_kind",
        "recipient_id",
        "template",
        "params",
        "tip_id",
        "dedupe_key",
        "status",
        "attempts",
        "created_at",
        "next_attempt_at",
    ],
    select(
        literal("staff"),
        _staff.c.id,
        bindparam("template", type_=String),
        bindparam("params", type_=JSON),
        bindparam("tip_id", type_=Integer),
        bindparam("dedupe_prefix", type_=String) + cast(_staff.c.id, String),
        literal("pending"),
        literal(0),
        bindparam("now", type_=UTCDateTime()),
        bindparam("now", type_=UTCDateTime()),
    )
    .join(_scopes, _scopes.c.staff_id == _staff.c.id)
    .where(
        _scopes.c.grid_code == bindparam("grid_code", type_=String),
        _staff.c.role == "grid_worker",
        _staff.c.active.is_(True),
    ),
)


def queue_message(
    session: Session,
    *,
    recipient_kind: str,
    recipient_id: int,
    template: str,
    params: dict | None = None,
    tip_id: int | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Insert an outbox row in the current transaction (sent only if the transaction commits)."""
    now = utcnow()
    session.connection().execute(
        _INSERT,
        dict(
            recipient_kind=recipient_kind,
            recipient_id=recipient_id,
            template=template,
            params=params or {},
            tip_id=tip_id,
            dedupe_key=dedupe_key,
            created_at=now,
            next_attempt_at=now,
        ),
    )


def queue_for_grid_workers(
    session: Session,
    grid_code: str,
    *,
    template: str,
    params: dict,
    tip_id: int | None,
    dedupe_prefix: str,
) -> int:
    """Queue one message per active grid worker of a grid; return how many were queued."""
    result = session.connection().execute(
        _TO_GRID_WORKERS,
        {
            "template": template,
            "params": params,
            "tip_id": tip_id,
            "dedupe_prefix": dedupe_prefix,
            "now": utcnow(),
            "grid_code": grid_code,
        },
    )
    return result.rowcount
