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
    text,
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
LOCATION_SOURCES = ("device", "map", "exif", "landmark", "address", "none")


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


def _where_not_null(column: str) -> Index:
    """An index on a mostly-NULL column that leaves the NULL rows out."""
    where = text(f"{column} IS NOT NULL")
    return Index(f"ix_tips_{column}", column, sqlite_where=where, postgresql_where=where)


class Tip(Base):
    """One tip as received: what, where, when, from whom (pseudonymous), and where it went."""

    __tablename__ = "tips"
    __table_args__ = (
        # The triage queue: open tips by priority, then by the clock (keyset pagination).
        Index("ix_tips_queue", "is_open", "priority_rank", "ack_due_at", "id"),
        Index("ix_tips_grid_received", "grid_id", "received_at"),
        Index("ix_tips_grid_path", "grid_path"),
        Index("ix_tips_next_escalation", "next_escalation_at"),
        # Covering for the duplicate window (app/reports/duplicates.py): the place check
        # reads the index alone instead of fetching each tip of the window for its position.
        Index(
            "ix_tips_dup_window",
            "category_id",
            "received_at",
            "latitude",
            "longitude",
            "incident_id",
            "id",
        ),
        # Most new tips have no incident, no assignee, and (anonymous) no reporter: partial
        # indexes skip those rows, three fewer index writes per tip. Lookups by value
        # (`= x`, IN, the foreign keys' checks) imply NOT NULL, so both databases use them.
        *(_where_not_null(column) for column in ("reporter_id", "incident_id", "assignee_id")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(8), unique=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("reporters.id"))
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
    # The grid's path ("C/T05/V0503/G0501") at routing time: scoping is a prefix match.
    grid_path: Mapped[str | None] = mapped_column(String(1000))
    priority: Mapped[str] = mapped_column(String(10))
    priority_rank: Mapped[int] = mapped_column(Integer, default=2)  # 0 urgent .. 3 low
    priority_reasons: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(15), default="new")
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    outcome: Mapped[str | None] = mapped_column(String(15))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("tips.id"))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    text_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    # The response clock: due times from the response targets, and the escalation ladder.
    ack_due_at: Mapped[dt.datetime | None]
    resolve_due_at: Mapped[dt.datetime | None]
    acknowledged_at: Mapped[dt.datetime | None]
    resolved_at: Mapped[dt.datetime | None]
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation_at: Mapped[dt.datetime | None]
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


class Incident(Base):
    """Tips of one category close in space and time, taken to be the same event."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    first_tip_id: Mapped[int | None] = mapped_column(Integer)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TipLink(Base):
    """A suspected relation between two tips: same incident, similar photo, same text."""

    __tablename__ = "tip_links"
    __table_args__ = (UniqueConstraint("tip_id", "other_tip_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    other_tip_id: Mapped[int] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # same_incident | similar_photo | same_text
    distance: Mapped[float | None] = mapped_column(Float)  # metres, or pHash bits
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class UrgentWord(Base):
    """A word that raises a tip's priority; the table is edited by admins."""

    __tablename__ = "urgent_words"

    id: Mapped[int] = mapped_column(primary_key=True)
    word: Mapped[str] = mapped_column(String(40), unique=True)
    weight: Mapped[int] = mapped_column(Integer, default=2)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class ResponseTarget(Base):
    """Minutes to acknowledge and to resolve, by priority, optionally by category and area."""

    __tablename__ = "response_targets"
    __table_args__ = (UniqueConstraint("priority", "category_code", "area_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    priority: Mapped[str] = mapped_column(String(10))
    category_code: Mapped[str | None] = mapped_column(String(30))
    area_code: Mapped[str | None] = mapped_column(String(64))  # a town or grid code
    ack_minutes: Mapped[int] = mapped_column(Integer)
    resolve_minutes: Mapped[int] = mapped_column(Integer)


class ResponseTemplate(Base):
    """A canned message to the reporter for a status, in Chinese and English."""

    __tablename__ = "response_templates"
    __table_args__ = (UniqueConstraint("code", "locale"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    status: Mapped[str | None] = mapped_column(String(15))
    locale: Mapped[str] = mapped_column(String(5))
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)


class Landmark(Base):
    """A named place kept by grid workers, so typed addresses can be placed on the map."""

    __tablename__ = "landmarks"

    id: Mapped[int] = mapped_column(primary_key=True)
    grid_code: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[list] = mapped_column(JSON, default=list)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Audio(Base):
    """A voice note sent with a tip (the bot's "what happened"), kept as the original audio."""

    __tablename__ = "tip_audio"

    id: Mapped[int] = mapped_column(primary_key=True)
    tip_id: Mapped[int] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    media_key: Mapped[str] = mapped_column(String(100), index=True)
    mime_type: Mapped[str] = mapped_column(String(40))
    duration_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
