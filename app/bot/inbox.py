"""The update inbox: store before acknowledging, claim with a lease, finish once, dead-letter.

A row is `pending` until the unit of work that handles it marks it `done` (in
the same transaction as the handler's effects), or until it has failed
`max_attempts` times and becomes `dead`. A claim sets a lease (`available_at`
in the future, `last_error` = the claimer's lease mark); when the lease runs out
the row is due again, so rows of a worker that died are re-run by another after
the lease. The bot process (one per token) marks its leases "leased" and, at
start-up, releases those its dead predecessor left; `tipline bot --inbox-only`
processes mark theirs "leased:inbox-only", which only expiry (or their own clean
stop) gives back, as no process can tell a live one's lease from a dead one's.

Several workers (tasks or processes) may claim at once: rows are locked with
FOR UPDATE SKIP LOCKED, and a row is claimable only while no earlier pending row
of its chat exists, so a chat's head (leased, or waiting for its retry) holds
back that chat's later updates and each chat is handled in update_id order by
whichever worker is free. A handler that finishes a row someone else finished
first gets AlreadyHandled and its transaction is rolled back: one effect.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from app.bot.models import InboxUpdate
from app.bot.updates import chat_key
from app.db import insert_unless_exists, utcnow

LEASED = "leased"  # by the bot process that holds the per-token lock
LEASED_INBOX_ONLY = "leased:inbox-only"  # by a `tipline bot --inbox-only` process
_inbox = InboxUpdate.__table__
_earlier = _inbox.alias("earlier")
# An earlier update of the same chat is still waiting (leased, retrying or not yet
# claimed): this row must wait for it. Served by ix_bot_inbox_chat_order.
_CHAT_HEAD = ~exists().where(
    _earlier.c.chat_id == _inbox.c.chat_id,
    _earlier.c.status == "pending",
    _earlier.c.update_id < _inbox.c.update_id,
)


@dataclass(frozen=True)
class Claimed:
    """A claimed inbox row, as plain values for the worker."""

    id: int
    update_id: int
    attempts: int
    payload: dict


class AlreadyHandled(Exception):
    """The row is no longer pending: someone finished it; roll back this handling."""


def store_updates(session: Session, payloads: list[dict], *, now: dt.datetime | None = None) -> int:
    """Insert sanitised updates; an update_id already stored is a no-op. Return how many are new."""
    now = now or utcnow()
    conn = session.connection()
    stored = 0
    for payload in payloads:
        new_id = insert_unless_exists(
            conn,
            _inbox,
            {
                "update_id": payload["update_id"],
                "chat_id": chat_key(payload),
                "received_at": now,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "available_at": now,
            },
        )
        stored += new_id is not None
    return stored


def claim_updates(
    session: Session,
    *,
    now: dt.datetime | None = None,
    lease_seconds: float = 120,
    limit: int = 100,
    mark: str = LEASED,
) -> list[Claimed]:
    """Lease due pending rows that head their chat (oldest update first); count the attempt."""
    now = now or utcnow()
    rows = session.execute(
        select(_inbox.c.id, _inbox.c.update_id, _inbox.c.attempts, _inbox.c.payload)
        .where(_inbox.c.status == "pending", _inbox.c.available_at <= now, _CHAT_HEAD)
        .order_by(_inbox.c.update_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    session.execute(
        update(_inbox)
        .where(_inbox.c.id.in_([r.id for r in rows]))
        .values(
            attempts=_inbox.c.attempts + 1,
            available_at=now + dt.timedelta(seconds=lease_seconds),
            last_error=mark,
        )
    )
    return [Claimed(r.id, r.update_id, r.attempts + 1, r.payload) for r in rows]


def any_due(session: Session, *, now: dt.datetime | None = None) -> bool:
    """Whether some pending row is due (a cheap read before taking the write lock)."""
    due = select(_inbox.c.id).where(
        _inbox.c.status == "pending", _inbox.c.available_at <= (now or utcnow()), _CHAT_HEAD
    )
    return session.scalar(due.limit(1)) is not None


def pending_chats(session: Session) -> frozenset[int]:
    """Chats with updates still waiting in the inbox (an album there is not settled yet)."""
    rows = session.scalars(
        select(_inbox.c.chat_id)
        .where(_inbox.c.status == "pending", _inbox.c.chat_id.is_not(None))
        .distinct()
    )
    return frozenset(rows)


def finish_update(session: Session, inbox_id: int, *, now: dt.datetime | None = None) -> None:
    """Mark a row done in the handler's transaction, dropping its content (no longer needed)."""
    done = session.execute(
        update(_inbox)
        .where(_inbox.c.id == inbox_id, _inbox.c.status == "pending")
        .values(status="done", processed_at=now or utcnow(), payload={}, last_error=None)
    )
    if done.rowcount != 1:
        raise AlreadyHandled(f"inbox row {inbox_id} is not pending")


def fail_update(
    session: Session,
    inbox_id: int,
    *,
    error: str,
    max_attempts: int,
    retry_base_seconds: float,
    now: dt.datetime | None = None,
) -> bool:
    """Record a failed attempt: retry later with backoff, or dead-letter. Return True if dead."""
    now = now or utcnow()
    attempts = session.scalar(
        select(_inbox.c.attempts).where(_inbox.c.id == inbox_id, _inbox.c.status == "pending")
    )
    if attempts is None:
        return False
    dead = attempts >= max_attempts
    delay = retry_base_seconds * 2 ** max(0, attempts - 1)
    session.execute(
        update(_inbox)
        .where(_inbox.c.id == inbox_id)
        .values(
            status="dead" if dead else "pending",
            available_at=now + dt.timedelta(seconds=delay),
            processed_at=now if dead else None,
            last_error=error[:200],
        )
    )
    return dead


def retry_now(session: Session, inbox_ids: list[int]) -> int:
    """Give leased rows back, due at once and the attempt uncounted; return how many.

    For a harmless race lost (not a failure), and for rows a stopping worker claimed
    but never started: another worker takes them now, not when the lease runs out.
    """
    if not inbox_ids:
        return 0
    result = session.execute(
        update(_inbox)
        .where(_inbox.c.id.in_(inbox_ids), _inbox.c.status == "pending")
        .values(available_at=utcnow(), attempts=_inbox.c.attempts - 1, last_error=None)
    )
    return result.rowcount


def release_leases(session: Session, *, now: dt.datetime | None = None) -> int:
    """Make rows the bot process's dead predecessor had leased due now.

    Only the bot holding the per-token lock may call this, and it releases only its
    own mark: an inbox-only process's leases may be live (it is handling them), so
    those come back by expiry alone.
    """
    result = session.execute(
        update(_inbox)
        .where(_inbox.c.status == "pending", _inbox.c.last_error == LEASED)
        .values(available_at=now or utcnow())
    )
    return result.rowcount


def prune_inbox(session: Session, *, older_than: dt.datetime) -> int:
    """Delete handled rows old enough that Telegram will not deliver their update again."""
    result = session.execute(
        delete(_inbox).where(_inbox.c.status == "done", _inbox.c.processed_at < older_than)
    )
    return result.rowcount
