"""QUALITY.md 38: retention deletes old closed tips with everything of theirs, and no more."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from app.bot.models import Draft, InboxUpdate
from app.cli import Context, cli
from app.db import Base, make_engine, make_session_factory, unit_of_work, utcnow
from app.grids.index import METRES_PER_DEGREE
from app.outbox.models import OutboxMessage
from app.outbox.services import queue_message
from app.partners.models import PartnerRequest, WebhookAttempt
from app.people.services import create_reporter, create_staff_user
from app.reports.duplicates import duplicate_candidates
from app.reports.models import (
    Audio,
    IdempotencyRecord,
    Incident,
    Photo,
    Tip,
    TipEvent,
    TipLink,
)
from app.reports.retention import TIP_CHILDREN, apply_retention, run_retention
from app.reports.services import Upload, submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.sweeper import referenced_keys
from app.reports.workflow import apply_action
from app.rewards.awards import run_awards, verify_run
from app.rewards.models import AwardRun, PointEntry
from app.rewards.services import balance_mismatches
from tests.images import phone_jpeg
from tests.layers import centre_of

DAY = dt.timedelta(days=1)
# Counts the dry run must predict exactly.
COUNTED = ("tips", "photos", "audio", "events", "drafts", "inbox", "idempotency", "incidents")


def _fields(grid: str = "G1", description: str = "电动车电瓶被盗") -> dict:
    lat, lon = centre_of(grid)
    return {"category": "theft", "description": description, "latitude": lat, "longitude": lon}


def _files(store: LocalMediaStore) -> set[str]:
    return {key for key, _ in store.iter_keys()}


def _count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _ledger(session) -> dict[int, tuple[int, int]]:
    """Per reporter: (sum of points, number of entries)."""
    rows = session.execute(
        select(PointEntry.reporter_id, func.sum(PointEntry.points), func.count()).group_by(
            PointEntry.reporter_id
        )
    )
    return {r: (int(total), int(n)) for r, total, n in rows}


@pytest.fixture
def world(settings, seeded):
    """Old closed, old open, recently closed and duplicate tips, messages, drafts, inbox rows."""
    store = LocalMediaStore(settings.media_dir)
    t0 = utcnow()
    shared_photo = phone_jpeg(640, 480, gps=None)
    with unit_of_work(seeded) as s:
        boss = create_staff_user(s, "boss", "admin").id
        reporter = create_reporter(s, "taxi_driver").id
        other = create_reporter(s, "volunteer").id

    def submit(reporter_id, *, grid="G1", photos=(), key=None, text="电动车电瓶被盗") -> int:
        with unit_of_work(seeded) as s:
            result = submit_tip(
                s,
                settings,
                store,
                fields=_fields(grid, text),
                uploads=[Upload(p, "p.jpg") for p in photos],
                channel="api",
                reporter_id=reporter_id,
                idempotency_key=key,
            )
            return s.scalar(select(Tip.id).where(Tip.ref == result.ref))

    def act(tip_id, action, **kw) -> None:
        with unit_of_work(seeded) as s:
            apply_action(s, tip_id, actor_id=boss, action=action, **kw)

    # Old and closed, confirmed (so the ledger has its award), with photos and an Open311 row.
    old_closed = submit(
        reporter, photos=[shared_photo, phone_jpeg(900, 500, gps=None)], key=str(uuid.uuid4())
    )
    act(old_closed, "acknowledge")
    act(old_closed, "resolve", outcome="confirmed")
    # Old and open: never deleted.
    old_open = submit(other, grid="G2", photos=[phone_jpeg(1000, 700, gps=None)], text="路灯坏了")
    # Closed but changed recently (moved below): stays, and keeps the photo it shares.
    recent_closed = submit(other, grid="G3", photos=[shared_photo], text="可疑车辆")
    act(recent_closed, "reject", outcome="unfounded")
    # A recent duplicate of the old tip: stays, forgets the link.
    duplicate = submit(other, grid="G4", text="又一次被盗")
    act(duplicate, "mark_duplicate", duplicate_of_id=old_closed)

    with unit_of_work(seeded) as s:
        later = t0 + 700 * DAY
        for tip_id in (recent_closed, duplicate):
            s.execute(
                update(Tip).where(Tip.id == tip_id).values(updated_at=later, resolved_at=later)
            )
        # The shared photo linked the two tips already (app/reports/duplicates.py).
        assert _count(s, TipLink, TipLink.other_tip_id == old_closed) >= 1
        s.add(
            PartnerRequest(
                partner_id=_partner(s, reporter),
                tip_id=old_closed,
                token="tok-old",
                service_code="theft",
            )
        )
        s.add(
            Audio(
                tip_id=old_closed,
                media_key=store.put(b"OggS voice", suffix=".ogg"),
                mime_type="audio/ogg",
            )
        )
        incident = Incident(
            category_id=s.scalar(select(Tip.category_id).where(Tip.id == old_closed))
        )
        s.add(incident)
        s.flush()
        s.execute(update(Tip).where(Tip.id == old_closed).values(incident_id=incident.id))
        # Messages: an old finished one, an old still-pending one (stays), one with an attempt.
        for status in ("sent", "failed", "pending"):
            queue_message(
                s,
                recipient_kind="reporter",
                recipient_id=other,
                template="bot.reply",
                params={"text": status},
                dedupe_key=f"unrelated:{status}",
            )
        hook = s.scalar(
            select(OutboxMessage.id).where(OutboxMessage.dedupe_key == "unrelated:sent")
        )
        for status in ("sent", "failed"):
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.dedupe_key == f"unrelated:{status}")
                .values(status=status)
            )
        s.add(WebhookAttempt(outbox_id=hook, subscription_id=_subscription(s, reporter), attempt=1))
        # The bot's leftovers: an abandoned draft, handled, dead and pending inbox rows.
        s.add(Draft(reporter_id=other, step="photos", data={"photos": []}, expires_at=t0))
        for n, status in enumerate(("done", "dead", "pending")):
            s.add(
                InboxUpdate(
                    update_id=1000 + n,
                    payload={"update_id": 1000 + n},
                    status=status,
                    processed_at=t0 if status == "done" else None,
                    received_at=t0,
                )
            )
        run = run_awards(s, t0.strftime("%Y-%m"), actor_id=boss)
        award_run = run.id
    return SimpleNamespace(
        store=store, t0=t0, old_closed=old_closed, old_open=old_open,
        recent_closed=recent_closed, duplicate=duplicate, award_run=award_run,
        reporter=reporter, other=other,
    )  # fmt: skip


def _partner(s, reporter_id: int) -> int:
    from app.partners.models import Partner

    partner = Partner(name="保安公司", reporter_id=reporter_id, key_hash="h" * 64, key_prefix="k")
    s.add(partner)
    s.flush()
    return partner.id


def _subscription(s, reporter_id: int) -> int:
    from app.partners.models import Partner, WebhookSubscription

    partner_id = s.scalar(select(Partner.id)) or _partner(s, reporter_id)
    sub = WebhookSubscription(partner_id=partner_id, url="https://partner.example/hook", secret="s")
    s.add(sub)
    s.flush()
    return sub.id


def test_everything_of_an_old_closed_tip_goes_together(settings, seeded, world):
    with seeded() as s:
        ledger_before = _ledger(s)
        files_before = _files(world.store)
        assert ledger_before[world.reporter][0] > 0  # the confirmed tip earned points
        assert _count(s, Photo, Photo.tip_id == world.old_closed) == 2
        assert _count(s, IdempotencyRecord, IdempotencyRecord.tip_id == world.old_closed) == 1

    with seeded() as s:
        report = apply_retention(s, world.store, settings, now=world.t0 + 731 * DAY)

    assert report.tips == 1 and report.photos == 2 and report.audio == 1
    # The derivative and thumbnail only the old tip used, and its voice note; the shared
    # photo's files stay with the recent tip.
    assert report.files == 3
    with seeded() as s:
        remaining = set(s.scalars(select(Tip.id)))
        assert remaining == {world.old_open, world.recent_closed, world.duplicate}
        gone = Tip.id == world.old_closed
        for model in (Photo, TipEvent, Audio, IdempotencyRecord, PartnerRequest, OutboxMessage):
            assert _count(s, model, model.tip_id == world.old_closed) == 0, model.__name__
        assert _count(s, Tip, gone) == 0
        assert _count(s, TipLink, TipLink.tip_id == world.old_closed) == 0
        assert _count(s, TipLink, TipLink.other_tip_id == world.old_closed) == 0
        assert _count(s, Incident) == 0
        assert s.scalar(select(Tip.duplicate_of_id).where(Tip.id == world.duplicate)) is None
        assert s.scalar(select(Tip.status).where(Tip.id == world.duplicate)) == "duplicate"
        # Finished messages and their webhook attempts went; the pending one stays.
        assert set(s.scalars(select(OutboxMessage.status).where(
            OutboxMessage.dedupe_key.like("unrelated:%")))) == {"pending"}  # fmt: skip
        assert _count(s, WebhookAttempt) == 0
        assert _count(s, Draft) == 0
        assert set(s.scalars(select(InboxUpdate.status))) == {"pending"}
        # Files and rows agree, and no kept row lost its file.
        assert _files(world.store) == referenced_keys(s)
        assert _files(world.store) < files_before
        # The ledger keeps every amount and entry; balances still equal its sums.
        assert _ledger(s) == ledger_before
        assert balance_mismatches(s) == []
        assert s.scalar(select(PointEntry.tip_ref).where(PointEntry.tip_id == world.old_closed))
        # The frozen award run still verifies; a new run of the period ranks the same
        # (only the evidence no longer shows the deleted tip's status).
        assert verify_run(s.get(AwardRun, world.award_run))
        rerun = run_awards(s, world.t0.strftime("%Y-%m"), actor_id=None)
        assert (rerun.diff["changes"], rerun.diff["nominees"]) == ([], {})
        s.rollback()


def test_before_the_period_ends_nothing_goes(settings, seeded, world):
    with seeded() as s:
        before = {m.__name__: _count(s, m) for m in (Tip, Photo, TipEvent, OutboxMessage)}
        files = _files(world.store)
        report = apply_retention(s, world.store, settings, now=world.t0 + 729 * DAY)
    assert report.tips == 0 and report.photos == 0 and report.files == 0
    with seeded() as s:
        assert {m.__name__: _count(s, m) for m in (Tip, Photo, TipEvent, OutboxMessage)} == before
    assert _files(world.store) == files


def test_open_tips_stay_however_old(settings, seeded, world):
    with seeded() as s:
        apply_retention(s, world.store, settings, now=world.t0 + 100 * 365 * DAY)
    with seeded() as s:
        assert set(s.scalars(select(Tip.id))) == {world.old_open}
        assert _count(s, Photo, Photo.tip_id == world.old_open) == 1
        assert _files(world.store) == referenced_keys(s)
        assert len(referenced_keys(s)) == 2


def test_dry_run_counts_and_changes_nothing(settings, seeded, world):
    factory = seeded
    now = world.t0 + 731 * DAY
    counted = run_retention(factory, world.store, settings, now=now, dry_run=True)
    with factory() as s:
        assert _count(s, Tip) == 4
    assert (counted.tips, counted.photos, counted.audio, counted.drafts) == (1, 2, 1, 1)
    assert (counted.inbox, counted.incidents) == (2, 1)
    done = run_retention(factory, world.store, settings, now=now)
    for name in COUNTED:
        assert getattr(done, name) == getattr(counted, name), name
    assert done.outbox == counted.outbox


def test_batches_are_separate_transactions(settings, seeded):
    store = LocalMediaStore(settings.media_dir)
    with unit_of_work(seeded) as s:
        boss = create_staff_user(s, "boss", "admin").id
        ids = []
        for n in range(5):
            result = submit_tip(s, settings, store, fields=_fields(f"G{n % 4 + 1}", f"第{n}条"),
                                uploads=[], channel="api")  # fmt: skip
            ids.append(s.scalar(select(Tip.id).where(Tip.ref == result.ref)))
        s.flush()
        for tip_id in ids:
            apply_action(s, tip_id, actor_id=boss, action="reject", outcome="unfounded")
    with seeded() as s:
        report = apply_retention(s, store, settings, now=utcnow() + 800 * DAY, batch_size=2)
    assert (report.tips, report.batches) == (5, 3)
    with seeded() as s:
        assert _count(s, Tip) == 0 and _count(s, TipEvent) == 0


def test_every_foreign_key_to_tips_is_cleared():
    """A new table pointing at tips must be taught to the retention job, or it would block it."""
    import app.models  # noqa: F401

    handled = {m.__tablename__ for m in TIP_CHILDREN} | {"tip_links", "tips"}
    pointing = {
        table.name
        for table in Base.metadata.tables.values()
        for fk in table.foreign_keys
        if fk.column.table.name == "tips"
    }
    assert pointing <= handled, pointing - handled


def test_command_line_runs_at_a_given_time(db_url, tmp_path):
    import app.models  # noqa: F401

    env = {"DATABASE_URL": db_url, "TIPLINE_SECRET_KEY": "k", "TIPLINE_MEDIA_DIR": str(tmp_path)}
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    with unit_of_work(make_session_factory(engine)) as s:
        reporter = create_reporter(s, "volunteer").id
        s.add(Draft(reporter_id=reporter, step="category", data={}, expires_at=utcnow()))
    engine.dispose()
    runner = CliRunner()
    later = (utcnow() + 2 * DAY).isoformat()
    dry = runner.invoke(
        cli, ["retention", "run", "--dry-run", "--now", later], obj=Context(), env=env
    )
    assert dry.exit_code == 0, dry.output
    assert "would remove" in dry.output and "drafts=1" in dry.output
    done = runner.invoke(cli, ["retention", "run", "--now", later], obj=Context(), env=env)
    assert done.exit_code == 0 and "removed" in done.output and "drafts=1" in done.output
    again = runner.invoke(cli, ["retention", "run", "--now", later], obj=Context(), env=env)
    assert "drafts=0" in again.output
    bad = runner.invoke(cli, ["retention", "run", "--now", "yesterday"], obj=Context(), env=env)
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


# --- incidents stay coherent --------------------------------------------------------------------


@pytest.fixture
def incident_of_three(settings, seeded):
    """Three tips 20 m and a minute apart that intake joined into one incident, first to last."""
    store = LocalMediaStore(settings.media_dir)
    lat, lon = centre_of("G1")
    t0 = utcnow()
    with unit_of_work(seeded) as s:
        boss = create_staff_user(s, "boss", "admin").id
        reporter = create_reporter(s, "taxi_driver").id
    ids = []
    for n in range(3):
        with unit_of_work(seeded) as s:
            fields = {
                "category": "theft",
                "description": f"电动车被盗 第{n}条",
                "latitude": lat + n * 20 / METRES_PER_DEGREE,
                "longitude": lon,
            }
            result = submit_tip(
                s, settings, store, fields=fields, uploads=[], channel="api",
                reporter_id=reporter, now=t0 + n * dt.timedelta(minutes=1),
            )  # fmt: skip
            ids.append(s.scalar(select(Tip.id).where(Tip.ref == result.ref)))
    with seeded() as s:
        incident_ids = set(s.scalars(select(Tip.incident_id).where(Tip.id.in_(ids))))
        assert len(incident_ids) == 1 and None not in incident_ids
        incident = s.get(Incident, incident_ids.pop())
        assert incident.first_tip_id == ids[0]

    def close(tip_id: int, outcome: str) -> None:
        with unit_of_work(seeded) as s:
            if outcome == "confirmed":
                apply_action(s, tip_id, actor_id=boss, action="acknowledge")
                apply_action(s, tip_id, actor_id=boss, action="resolve", outcome=outcome)
            else:
                apply_action(s, tip_id, actor_id=boss, action="reject", outcome=outcome)

    return SimpleNamespace(
        store=store, ids=ids, incident=incident.id, close=close, later=t0 + 731 * DAY
    )


def _assert_incidents_coherent(session) -> None:
    """Each incident has tips, names one of them first, the earliest, and sits where it is."""
    for incident in session.scalars(select(Incident)):
        tips = session.scalars(
            select(Tip).where(Tip.incident_id == incident.id).order_by(Tip.received_at, Tip.id)
        ).all()
        assert tips, f"incident {incident.id} has no tips"
        first = tips[0]
        assert incident.first_tip_id == first.id
        assert (incident.latitude, incident.longitude) == (first.latitude, first.longitude)
    kept = set(session.scalars(select(Tip.id)))
    for tip_id, other in session.execute(select(TipLink.tip_id, TipLink.other_tip_id)):
        assert {tip_id, other} <= kept


def test_an_incident_whose_first_two_tips_go_names_the_third_first(
    settings, seeded, incident_of_three
):
    world = incident_of_three
    first, second, third = world.ids
    world.close(first, "confirmed")  # the first reporter's award is in the ledger
    world.close(second, "unfounded")
    with seeded() as s:
        ledger_before = _ledger(s)
        rules = set(s.scalars(select(PointEntry.rule_code).where(PointEntry.tip_id == first)))
        assert "first_reporter" in rules
    counted = run_retention(seeded, world.store, settings, now=world.later, dry_run=True)
    assert (counted.tips, counted.incidents) == (2, 0)

    with seeded() as s:
        # One tip a batch: the incident is coherent after each commit, not only at the end.
        report = apply_retention(s, world.store, settings, now=world.later, batch_size=1)

    assert (report.tips, report.batches, report.incidents) == (2, 2, 0)
    with seeded() as s:
        assert set(s.scalars(select(Tip.id))) == {third}
        incident = s.get(Incident, world.incident)
        kept = s.get(Tip, third)
        assert kept.incident_id == incident.id and incident.first_tip_id == third
        assert (incident.latitude, incident.longitude) == (kept.latitude, kept.longitude)
        _assert_incidents_coherent(s)
        assert duplicate_candidates(s, third) == []
        assert _ledger(s) == ledger_before
        assert balance_mismatches(s) == []


def test_an_incident_whose_tips_all_go_goes_too(settings, seeded, incident_of_three):
    world = incident_of_three
    for tip_id, outcome in zip(world.ids, ("confirmed", "unfounded", "unfounded"), strict=True):
        world.close(tip_id, outcome)
    with seeded() as s:
        ledger_before = _ledger(s)
    counted = run_retention(seeded, world.store, settings, now=world.later, dry_run=True)
    assert (counted.tips, counted.incidents) == (3, 1)

    report = run_retention(seeded, world.store, settings, now=world.later)

    assert (report.tips, report.incidents) == (3, 1)
    with seeded() as s:
        assert _count(s, Tip) == 0 and _count(s, Incident) == 0 and _count(s, TipLink) == 0
        assert _ledger(s) == ledger_before
        assert balance_mismatches(s) == []


def test_an_incident_that_keeps_its_first_tip_is_left_as_it_was(
    settings, seeded, incident_of_three
):
    world = incident_of_three
    first, second, third = world.ids
    world.close(second, "unfounded")
    world.close(third, "unfounded")
    with seeded() as s:
        before = s.execute(
            select(Incident.first_tip_id, Incident.latitude, Incident.longitude).where(
                Incident.id == world.incident
            )
        ).one()

    report = run_retention(seeded, world.store, settings, now=world.later)

    assert (report.tips, report.incidents) == (2, 0)
    with seeded() as s:
        after = s.execute(
            select(Incident.first_tip_id, Incident.latitude, Incident.longitude).where(
                Incident.id == world.incident
            )
        ).one()
        assert after == before and after.first_tip_id == first
        _assert_incidents_coherent(s)
