"""The outbox table: every message to a reporter or staff member is first a row here."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

# Who the bot's sender delivers to; `webhook` rows (recipient_id = a partner_webhooks id)
# are delivered by the webhook worker of app.partners instead.
TELEGRAM_RECIPIENTS = ("reporter", "staff")
RECIPIENT_KINDS = (*TELEGRAM_RECIPIENTS, "webhook")


class OutboxMessage(Base):
    """One message to send once; the sender moves it pending → sent | failed."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    recipient_kind: Mapped[str] = mapped_column(String(10))  # RECIPIENT_KINDS
    recipient_id: Mapped[int] = mapped_column(Integer)
    tip_id: Mapped[int | None] = mapped_column(
        ForeignKey("tips.id", ondelete="CASCADE"), index=True
    )
    template: Mapped[str] = mapped_column(String(60))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
