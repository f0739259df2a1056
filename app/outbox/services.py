"""Queue messages in the caller's transaction; the bot process sends them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.outbox.models import OutboxMessage


def queue_message(
    session: Session,
    *,
    recipient_kind: str,
    recipient_id: int,
    template: str,
    params: dict | None = None,
    tip_id: int | None = None,
    dedupe_key: str | None = None,
) -> OutboxMessage:
    """Add an outbox row in the current transaction (sent only if the transaction commits)."""
    msg = OutboxMessage(
        recipient_kind=recipient_kind,
        recipient_id=recipient_id,
        template=template,
        params=params or {},
        tip_id=tip_id,
        dedupe_key=dedupe_key,
    )
    session.add(msg)
    return msg
