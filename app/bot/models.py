"""The bot's durable state: the update inbox and tips under construction."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class InboxUpdate(Base):
    """A Telegram update, committed before it is acknowledged; processing is driven from here.

    The payload is stored after sanitising: contact cards, phone numbers and forward
    origins are dropped before the row is written.
    """

    __tablename__ = "bot_inbox"
    __table_args__ = (
        Index("ix_bot_inbox_pending", "status", "available_at"),
        # Per-chat order when several workers claim: the oldest pending update of each chat.
        Index("ix_bot_inbox_chat_order", "chat_id", "status", "update_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    update_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    # The chat the update came from (null for updates without one): updates of one chat
    # are handled in update_id order, whichever worker claims them.
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|done|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[dt.datetime] = mapped_column(default=utcnow)  # lease / retry time
    processed_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class Draft(Base):
    """A tip under construction in a chat: survives restarts, expires when abandoned."""

    __tablename__ = "bot_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    reporter_id: Mapped[int] = mapped_column(
        ForeignKey("reporters.id", ondelete="CASCADE"), unique=True
    )
    step: Mapped[str] = mapped_column(String(20))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    media_group_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
