"""Retention: old closed tips, and what only they needed, are deleted so nothing is kept forever.

What goes, once `Settings.retention_days` have passed:

- closed tips (`is_open` false) whose last change (`updated_at`, `resolved_at`) is
  older than the period, together with their photos and voice notes (rows, then
  files), events, links, idempotency records, Open311 request rows, outbox rows and
  the webhook attempts of those rows; incidents no remaining tip belongs to. An incident
  that keeps some of its tips is left coherent: when its first tip goes, the earliest
  remaining tip becomes first (and lends it its position, so the deleted tip's place is
  not kept either), by the `tidy_incidents` that merge and split use too
  (app/reports/duplicates.py). Incidents hold no counters: their size is always counted
  from the tips;
- sent and failed outbox rows older than the period, whatever they were about;
- drafts abandoned a day past their expiry (the bot expires them sooner, with a
  notice; this is the backstop when it was not running). Drafts hold Telegram file
  ids only, no stored files;
- handled inbox rows after two days (Telegram re-delivers for 24 hours), and
  dead-lettered ones after the period (they are kept that long for inspection).

What stays: open tips, however old; the points ledger (`point_entries.tip_id` is not a
foreign key, and each entry keeps its amount and `tip_ref`); point requests; award
runs (their snapshots are frozen JSON, and evidence lookups tolerate a missing tip);
the admin audit log (it names reporters, rules and layers, never tips).

Each batch of tips is its own transaction, so the job never holds a long lock. Files
go only after the rows' commit, through the orphan sweeper: a crash in between leaves
files without rows (swept later), never a row without its file; the sweeper's grace
also protects a file a new tip is reusing (content addressing) before its commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields

from sqlalchemy import and_, delete, exists, func, not_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.bot.inbox import prune_inbox
from app.bot.models import Draft, InboxUpdate
from app.config import Settings
from app.db import utcnow
from app.outbox.models import OutboxMessage
from app.partners.models import PartnerRequest, WebhookAttempt
from app.reports.duplicates import tidy_incidents
from app.reports.models import Audio, IdempotencyRecord, Incident, Photo, Tip, TipEvent, TipLink
from app.reports.storage import MediaStore
from app.reports.sweeper import sweep_orphans

log = logging.getLogger("tipline.retention")

BATCH_SIZE = 500
DRAFT_GRACE = dt.timedelta(days=1)
HANDLED_INBOX_KEEP = dt.timedelta(days=2)  # as the bot's own pruning: past Telegram's 24 h

# Tables with a foreign key to tips.id, cleared before the tips (test_retention checks
# that this list covers every such key in the models).
TIP_CHILDREN = (TipEvent, Photo, Audio, IdempotencyRecord, PartnerRequest, OutboxMessage)

_tips = Tip.__table__
_incidents = Incident.__table__
_outbox = OutboxMessage.__table__


@dataclass
class RetentionReport:
    """How many rows (and files) one run deleted, or would delete on a dry run."""

    tips: int = 0
    photos: int = 0
    audio: int = 0
    events: int = 0
    outbox: int = 0
    drafts: int = 0
    inbox: int = 0
    idempotency: int = 0
    incidents: int = 0
    files: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name, for the command line and the log."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def retention_cutoff(settings: Settings, now: dt.datetime) -> dt.datetime:
    """Return the instant before which closed tips and finished messages are deleted."""
    return now - dt.timedelta(days=settings.retention_days)


def _expired_tips(cutoff: dt.datetime):
    """Closed tips last changed before the cutoff (open tips never match)."""
    return and_(
        _tips.c.is_open.is_(False),
        _tips.c.updated_at < cutoff,
        or_(_tips.c.resolved_at.is_(None), _tips.c.resolved_at < cutoff),
    )


def _old_messages(cutoff: dt.datetime):
    """Outbox rows that are finished (sent, or failed for good) and older than the cutoff."""
    return and_(_outbox.c.status.in_(("sent", "failed")), _outbox.c.created_at < cutoff)


def _count(session: Session, table, condition) -> int:
    return session.scalar(select(func.count()).select_from(table).where(condition)) or 0


def _rowcount(session: Session, statement) -> int:
    return session.execute(statement).rowcount or 0


def delete_tips(session: Session, tip_ids: Sequence[int]) -> RetentionReport:
    """Delete these tips with every row that belongs only to them (files are left to the sweep)."""
    report = RetentionReport(tips=len(tip_ids))
    ids = list(tip_ids)
    outbox_ids = select(_outbox.c.id).where(_outbox.c.tip_id.in_(ids))
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.outbox_id.in_(outbox_ids)))
    report.outbox += _rowcount(session, delete(OutboxMessage).where(OutboxMessage.tip_id.in_(ids)))
    session.execute(delete(PartnerRequest).where(PartnerRequest.tip_id.in_(ids)))
    report.idempotency += _rowcount(
        session, delete(IdempotencyRecord).where(IdempotencyRecord.tip_id.in_(ids))
    )
    session.execute(
        delete(TipLink).where(or_(TipLink.tip_id.in_(ids), TipLink.other_tip_id.in_(ids)))
    )
    report.events += _rowcount(session, delete(TipEvent).where(TipEvent.tip_id.in_(ids)))
    report.photos += _rowcount(session, delete(Photo).where(Photo.tip_id.in_(ids)))
    report.audio += _rowcount(session, delete(Audio).where(Audio.tip_id.in_(ids)))
    # A kept tip may have been marked a duplicate of one that goes: it forgets the link,
    # not its own last change (updated_at stays as it was).
    session.execute(
        update(_tips)
        .where(_tips.c.duplicate_of_id.in_(ids), _tips.c.id.not_in(ids))
        .values(duplicate_of_id=None, updated_at=_tips.c.updated_at)
    )
    incident_ids = set(
        session.scalars(
            select(_tips.c.incident_id).where(_tips.c.id.in_(ids), _tips.c.incident_id.is_not(None))
        )
    )
    session.execute(delete(_tips).where(_tips.c.id.in_(ids)))
    if incident_ids:
        report.incidents += tidy_incidents(session, incident_ids)
    return report


def _add(total: RetentionReport, part: RetentionReport) -> None:
    for f in fields(total):
        setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))


def _delete_the_rest(session: Session, settings: Settings, now: dt.datetime) -> RetentionReport:
    """Finished outbox rows, abandoned drafts, handled inbox rows, orphaned idempotency records."""
    cutoff = retention_cutoff(settings, now)
    report = RetentionReport()
    old = select(_outbox.c.id).where(_old_messages(cutoff))
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.outbox_id.in_(old)))
    report.outbox = _rowcount(session, delete(_outbox).where(_old_messages(cutoff)))
    report.drafts = _rowcount(session, delete(Draft).where(Draft.expires_at < now - DRAFT_GRACE))
    report.inbox = prune_inbox(session, older_than=now - HANDLED_INBOX_KEEP)
    report.inbox += _rowcount(
        session,
        delete(InboxUpdate).where(InboxUpdate.status == "dead", InboxUpdate.received_at < cutoff),
    )
    report.idempotency = _rowcount(
        session,
        delete(IdempotencyRecord).where(
            IdempotencyRecord.tip_id.is_(None), IdempotencyRecord.created_at < cutoff
        ),
    )
    return report


def count_retention(session: Session, settings: Settings, *, now: dt.datetime) -> RetentionReport:
    """Say what a run at `now` would delete (the dry run); changes nothing."""
    cutoff = retention_cutoff(settings, now)
    tip_ids = select(_tips.c.id).where(_expired_tips(cutoff))
    in_incident = _tips.c.incident_id == _incidents.c.id
    report = RetentionReport(
        tips=_count(session, _tips, _expired_tips(cutoff)),
        photos=_count(session, Photo.__table__, Photo.tip_id.in_(tip_ids)),
        audio=_count(session, Audio.__table__, Audio.tip_id.in_(tip_ids)),
        events=_count(session, TipEvent.__table__, TipEvent.tip_id.in_(tip_ids)),
        outbox=_count(session, _outbox, or_(_outbox.c.tip_id.in_(tip_ids), _old_messages(cutoff))),
        drafts=_count(session, Draft.__table__, Draft.expires_at < now - DRAFT_GRACE),
        inbox=_count(
            session,
            InboxUpdate.__table__,
            or_(
                and_(
                    InboxUpdate.status == "done",
                    InboxUpdate.processed_at < now - HANDLED_INBOX_KEEP,
                ),
                and_(InboxUpdate.status == "dead", InboxUpdate.received_at < cutoff),
            ),
        ),
        idempotency=_count(
            session,
            IdempotencyRecord.__table__,
            or_(
                IdempotencyRecord.tip_id.in_(tip_ids),
                and_(IdempotencyRecord.tip_id.is_(None), IdempotencyRecord.created_at < cutoff),
            ),
        ),
        # Incidents every tip of which expires (the others are only re-pointed).
        incidents=_count(
            session,
            _incidents,
            and_(
                exists().where(in_incident, _expired_tips(cutoff)),
                ~exists().where(in_incident, not_(_expired_tips(cutoff))),
            ),
        ),
    )
    session.rollback()
    return report


def apply_retention(
    session: Session,
    store: MediaStore,
    settings: Settings,
    *,
    now: dt.datetime,
    batch_size: int = BATCH_SIZE,
) -> RetentionReport:
    """Delete what the retention period has passed, committing batch by batch, then the files.

    The job is its own unit of work (like a CLI command): it commits after each batch
    of tips so no lock is held for long, and the caller's session must hold nothing
    of its own. The orphan sweep afterwards measures file age against `now` as well.
    """
    cutoff = retention_cutoff(settings, now)
    report = RetentionReport()
    while True:
        tip_ids = list(
            session.scalars(
                select(_tips.c.id)
                .where(_expired_tips(cutoff))
                .order_by(_tips.c.id)
                .limit(batch_size)
            )
        )
        if not tip_ids:
            break
        _add(report, delete_tips(session, tip_ids))
        session.commit()
        report.batches += 1
    _add(report, _delete_the_rest(session, settings, now))
    session.commit()
    report.files = sweep_orphans(
        session, store, grace_seconds=settings.orphan_grace_seconds, now=now.timestamp()
    )
    session.commit()
    log.info("retention removed %s", " ".join(f"{k}={v}" for k, v in report.as_dict().items()))
    return report


def run_retention(
    factory: sessionmaker[Session],
    store: MediaStore,
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> RetentionReport:
    """Run (or, on a dry run, count) retention in a session of its own: the CLI and the bot."""
    now = now or utcnow()
    with factory() as session:
        if dry_run:
            return count_retention(session, settings, now=now)
        return apply_retention(session, store, settings, now=now)
