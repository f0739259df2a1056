"""People the system knows: its own reporters and staff, never third parties."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow

REPORTER_ROLES = ("taxi_driver", "volunteer", "enterprise_guard", "citizen")
STAFF_ROLES = ("admin", "supervisor", "grid_worker")
ORG_KINDS = ("enterprise", "unit", "taxi_company", "volunteer_team")


class Organisation(Base):
    """An enterprise, unit, taxi company or volunteer team that reporters belong to."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    has_police_room: Mapped[bool] = mapped_column(Boolean, default=False)
    has_police_liaison: Mapped[bool] = mapped_column(Boolean, default=False)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Reporter(Base):
    """A reporter as staff see them: a pseudonym and a role, no channel identity."""

    __tablename__ = "reporters"

    id: Mapped[int] = mapped_column(primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(8), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    locale: Mapped[str] = mapped_column(String(5), default="zh")
    status: Mapped[str] = mapped_column(String(10), default="active")
    trust_score: Mapped[float] = mapped_column(Float, default=0.5)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    organisation: Mapped[Organisation | None] = relationship()


class ReporterIdentity(Base):
    """The restricted link from a pseudonym to a channel account (Telegram chat)."""

    __tablename__ = "reporter_identities"
    __table_args__ = (UniqueConstraint("channel", "external_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reporter_id: Mapped[int] = mapped_column(
        ForeignKey("reporters.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(20))
    # Keyed hash for lookup; the raw address is kept only because replies must reach it.
    external_hash: Mapped[str] = mapped_column(String(64))
    # A chat id, or an Open311 "kind:value" (an email is up to 254 characters).
    external_address: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReporterToken(Base):
    """A device or API token of a reporter, stored hashed."""

    __tablename__ = "reporter_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    reporter_id: Mapped[int] = mapped_column(
        ForeignKey("reporters.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]


class Invite(Base):
    """A one-use code that makes a reporter with a role and organisation."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    used_at: Mapped[dt.datetime | None]
    used_by_id: Mapped[int | None] = mapped_column(ForeignKey("reporters.id"))


class StaffUser(Base):
    """A supervisor, grid worker or admin who signs in to the admin page."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str] = mapped_column(String(5), default="zh")
    # Bumped on disable or logout-everywhere: sessions carrying an older value are dead.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    station: Mapped[str | None] = mapped_column(String(200))  # police service station staff
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # A staff member's own Telegram chat, linked with a one-time code, for alerts.
    telegram_chat_id: Mapped[str | None] = mapped_column(String(64))
    telegram_link_hash: Mapped[str | None] = mapped_column(String(64))
    last_login_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    settings: Mapped[dict | None] = mapped_column(JSON)

    scopes: Mapped[list[StaffScope]] = relationship(cascade="all, delete-orphan")


class StaffScope(Base):
    """A grid (at any level) a staff user may see; a town scope covers its subtree."""

    __tablename__ = "staff_scopes"

    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True
    )
    grid_code: Mapped[str] = mapped_column(String(40), primary_key=True)


class StaffToken(Base):
    """A staff API token, stored hashed."""

    __tablename__ = "staff_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]


class StaffSession(Base):
    """A signed-in admin session, kept server-side so logout and disable end it at once."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    epoch: Mapped[int] = mapped_column(Integer)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class AuditEntry(Base):
    """An admin action outside a tip's own trail: identity reveals, bans, layer uploads."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    action: Mapped[str] = mapped_column(String(40))
    target_kind: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSON)
