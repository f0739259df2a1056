"""Tips, their photos, their audit trail, categories and idempotency records."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow

CATEGORY_CODES = (
    "theft",
    "robbery_violence",
    "suspicious",
    "traffic",
    "fire_hazard",
    "fraud",
    "drugs_gambling",
    "dispute",
    "missing_person",
    "public_facility",
    "other",
)
PRIORITIES = ("urgent", "high", "normal", "low")
STAFF_STATUSES = (
    "new",
    "acknowledged",
    "assigned",
    "in_progress",
    "resolved",
    "rejected",
    "duplicate",
)
OUTCOMES = ("confirmed", "unfounded", "malicious")
CHANNELS = ("api", "web", "telegram", "open311")
LOCATION_SOURCES = ("device", "map", "exif", "address", "none")


class Category(Base):
    """What a tip is about, with its default severity and response-time targets."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(30), unique=True)
    name_zh: Mapped[str] = mapped_column(String(60))
    name_en: Mapped[str] = mapped_column(String(60))
    severity: Mapped[int] = mapped_column(Integer)  # 1 (low) .. 4 (urgent)
    ack_minutes: Mapped[int] = mapped_column(Integer)
    resolve_minutes: Mapped[int] = mapped_column(Integer)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Tip(Base):
    """One tip as received: what, where, when, from whom (pseudonymous), and where it went."""

    __tablename__ = "tips"
    __table_args__ = (
        Index("ix_tips_queue", "status", "priority", "received_at"),
        Index("ix_tips_grid_received", "grid_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(8), unique=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("reporters.id"), index=True)
    receipt_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(10))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    description: Mapped[str] = mapped_column(Text, default="")
    observed_at: Mapped[dt.datetime | None]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    location_source: Mapped[str] = mapped_column(String(10), default="none")
    address: Mapped[str | None] = mapped_column(Text)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    routing_reason: Mapped[str] = mapped_column(String(20))
    layer_version: Mapped[int | None] = mapped_column(Integer)
    neighbour_grids: Mapped[list | None] = mapped_column(JSON)
    flags: Mapped[list] = mapped_column(JSON, default=list)
    priority: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(15), default="new")
    outcome: Mapped[str | None] = mapped_column(String(15))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("tips.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    category: Mapped[Category] = relationship()
    photos: Mapped[list[Photo]] = relationship(
        back_populates="tip", order_by="Photo.position", cascade="all, delete-orphan"
    )
    events: Mapped[list[TipEvent]] = relationship(
        order_by="TipEvent.at", cascade="all, delete-orphan", passive_deletes=True
    )


class Photo(Base):
    """A cleaned photo of a tip: derivative and thumbnail keys in the media store."""

    __tablename__ = "photos"
    __table_args__ = (UniqueConstraint("tip_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # of the original upload, for duplicates
    original_format: Mapped[str] = mapped_column(String(10))
    derivative_key: Mapped[str] = mapped_column(String(100), index=True)
    thumbnail_key: Mapped[str] = mapped_column(String(100), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    thumb_width: Mapped[int] = mapped_column(Integer)
    thumb_height: Mapped[int] = mapped_column(Integer)
    phash: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    tip: Mapped[Tip] = relationship(back_populates="photos")


class TipEvent(Base):
    """The audit trail: who did what to a tip, when, from which status to which."""

    __tablename__ = "tip_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_kind: Mapped[str] = mapped_column(String(10))  # reporter | staff | system | partner
    actor_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(15))
    to_status: Mapped[str | None] = mapped_column(String(15))
    note: Mapped[str | None] = mapped_column(Text)  # staff-only
    data: Mapped[dict | None] = mapped_column(JSON)


class IdempotencyRecord(Base):
    """The first response to an Idempotency-Key, replayed for retries of the same request."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(40))  # reporter:<id> or anonymous
    key_hash: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JSON)
    tip_id: Mapped[int | None] = mapped_column(
        ForeignKey("tips.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
