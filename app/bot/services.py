"""The bot's own services: drafts in the database, replies through the outbox, voice notes.

Drafts are written with optimistic concurrency: every change names the
`updated_at` it was read with, so a timed job (expiry, album settling) and a
handler can never overwrite each other unnoticed; the loser raises StaleDraft
and its update is simply handled again.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from app.bot.models import Draft
from app.db import utcnow
from app.outbox.services import queue_message
from app.reports.models import Audio, Category, Tip
from app.reports.storage import MediaStore

REPLY_TEMPLATE = "bot.reply"  # an outbox row whose text was rendered by the bot itself
_drafts = Draft.__table__


class StaleDraft(Exception):
    """The draft changed (or went) since it was read; handle the update again."""


@dataclass(frozen=True)
class DraftView:
    """A draft as read: plain values, safe to pass between threads."""

    id: int
    reporter_id: int
    step: str
    data: dict
    media_group_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def copy_data(self) -> dict:
        """Return a deep copy of the data to change."""
        return copy.deepcopy(self.data)


def _view(row) -> DraftView:
    return DraftView(
        row.id,
        row.reporter_id,
        row.step,
        dict(row.data or {}),
        row.media_group_id,
        row.created_at,
        row.updated_at,
    )


def load_draft(session: Session, reporter_id: int) -> DraftView | None:
    """Return the reporter's draft, or None."""
    row = session.execute(select(_drafts).where(_drafts.c.reporter_id == reporter_id)).first()
    return _view(row) if row else None


def create_draft(
    session: Session,
    reporter_id: int,
    *,
    step: str,
    data: dict,
    now: dt.datetime,
    ttl: dt.timedelta,
    media_group_id: str | None = None,
) -> None:
    """Start a draft (one per reporter)."""
    session.execute(
        insert(_drafts).values(
            reporter_id=reporter_id,
            step=step,
            data=data,
            media_group_id=media_group_id,
            created_at=now,
            updated_at=now,
            expires_at=now + ttl,
        )
    )


def save_draft(
    session: Session,
    draft: DraftView,
    *,
    step: str,
    data: dict,
    now: dt.datetime,
    ttl: dt.timedelta,
    media_group_id: str | None = None,
) -> None:
    """Write a draft's next state, unless it changed since it was read."""
    result = session.execute(
        update(_drafts)
        .where(_drafts.c.id == draft.id, _drafts.c.updated_at == draft.updated_at)
        .values(
            step=step,
            data=data,
            media_group_id=media_group_id,
            updated_at=now,
            expires_at=now + ttl,
        )
    )
    if result.rowcount != 1:
        raise StaleDraft(f"draft {draft.id} changed")


def drop_draft(session: Session, draft: DraftView) -> None:
    """Delete a draft (submitted or cancelled), unless it changed since it was read."""
    result = session.execute(
        delete(_drafts).where(_drafts.c.id == draft.id, _drafts.c.updated_at == draft.updated_at)
    )
    if result.rowcount != 1:
        raise StaleDraft(f"draft {draft.id} changed")


def expired_drafts(session: Session, now: dt.datetime, limit: int = 100) -> list[DraftView]:
    """Return drafts past their expiry."""
    rows = session.execute(select(_drafts).where(_drafts.c.expires_at < now).limit(limit))
    return [_view(r) for r in rows]


def settled_albums(session: Session, quiet_since: dt.datetime, limit: int = 100) -> list[DraftView]:
    """Return drafts with an album whose last photo came before `quiet_since`."""
    rows = session.execute(
        select(_drafts)
        .where(_drafts.c.media_group_id.is_not(None), _drafts.c.updated_at < quiet_since)
        .limit(limit)
    )
    return [_view(r) for r in rows]


def clear_album(session: Session, draft: DraftView, data: dict) -> bool:
    """Mark the album acknowledged, unless a photo came meanwhile; return whether it was."""
    result = session.execute(
        update(_drafts)
        .where(_drafts.c.id == draft.id, _drafts.c.updated_at == draft.updated_at)
        .values(media_group_id=None, data=data)
    )
    return result.rowcount == 1


def queue_reply(
    session: Session,
    reporter_id: int,
    text: str,
    markup: dict | None = None,
    *,
    dedupe_key: str,
    tip_id: int | None = None,
) -> None:
    """Queue a bot reply to a reporter in the caller's transaction (sent once it commits)."""
    queue_message(
        session,
        recipient_kind="reporter",
        recipient_id=reporter_id,
        template=REPLY_TEMPLATE,
        params={"text": text, "markup": markup},
        tip_id=tip_id,
        dedupe_key=dedupe_key,
    )


def recent_tips(session: Session, reporter_id: int, limit: int = 10) -> list[tuple]:
    """Return (ref, staff status, category code, received_at) of the reporter's latest tips."""
    rows = session.execute(
        select(Tip.ref, Tip.status, Category.code, Tip.received_at)
        .join(Category, Category.id == Tip.category_id)
        .where(Tip.reporter_id == reporter_id)
        .order_by(Tip.received_at.desc(), Tip.id.desc())
        .limit(limit)
    )
    return [tuple(r) for r in rows]


def tip_id_for_ref(session: Session, ref: str) -> int | None:
    """Return the id of the tip with this reference."""
    return session.scalar(select(Tip.id).where(Tip.ref == ref))


def store_voice(store: MediaStore, data: bytes) -> str:
    """Write a voice note (the original audio) before the transaction that links it.

    Outside the transaction, so SQLite's writer lock never waits for the disk; should
    the link never commit, the orphan sweeper removes the file after its grace period.
    """
    return store.put(data, suffix=".ogg")


def attach_voice(
    session: Session,
    tip_id: int,
    media_key: str,
    *,
    mime_type: str,
    duration_s: int | None,
) -> None:
    """Link a voice note stored by store_voice to the tip."""
    session.add(
        Audio(
            tip_id=tip_id,
            media_key=media_key,
            mime_type=(mime_type or "audio/ogg")[:40],
            duration_s=duration_s,
            created_at=utcnow(),
        )
    )
    session.flush()
