"""The staff workflow on a real database: transitions, locks, notices, notes and the thread."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from app.db import unit_of_work
from app.outbox.models import OutboxMessage
from app.people.models import Reporter
from app.people.services import create_reporter, create_staff_user
from app.reports.errors import TipNotFound
from app.reports.models import STAFF_STATUSES, Tip, TipEvent
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.templates import seed_response_templates
from app.reports.triage import trust_from_counts
from app.reports.workflow import (
    ACTIONS,
    InvalidAction,
    InvalidTransition,
    ReporterUnreachable,
    add_note,
    apply_action,
    message_reporter,
    record_reporter_reply,
    tip_history,
)
from tests.layers import centre_of
from tests.unit.test_workflow_rules import EXPECTED

SECRET_NOTE = "嫌疑人车牌 辽H-12345, internal only"


@pytest.fixture
def world(seeded, settings):
    """Staff, a reporter and a way to submit tips; returns a namespace of ids."""
    with unit_of_work(seeded) as s:
        admin = create_staff_user(s, "boss", "admin")
        town = create_staff_user(s, "town", "supervisor", grids=["T1"])
        g1 = create_staff_user(s, "g1", "grid_worker", grids=["G1"])
        g4 = create_staff_user(s, "g4", "grid_worker", grids=["G4"])
        gone = create_staff_user(s, "gone", "grid_worker", grids=["G1"])
        gone.active = False
        reporter = create_reporter(s, "taxi_driver", locale="en")
        seed_response_templates(s)
        ids = dict(
            admin=admin.id, town=town.id, g1=g1.id, g4=g4.id, gone=gone.id, reporter=reporter.id
        )
    store = LocalMediaStore(settings.media_dir)

    def submit(reporter_id=None, grid="G1", category="theft") -> int:
        lat, lon = centre_of(grid)
        with unit_of_work(seeded) as s:
            result = submit_tip(
                s,
                settings,
                store,
                fields={
                    "category": category,
                    "description": "电动车被盗",
                    "latitude": lat,
                    "longitude": lon,
                },
                uploads=[],
                channel="api",
                reporter_id=reporter_id,
            )
            return s.scalar(select(Tip.id).where(Tip.ref == result.ref))

    return type("World", (), {**ids, "submit": staticmethod(submit), "factory": seeded})


def _act(world, tip_id, action, **kw):
    with unit_of_work(world.factory) as s:
        tip = apply_action(s, tip_id, actor_id=kw.pop("actor_id", world.admin), action=action, **kw)
        return tip.status


def _reporter_rows(factory, tip_id):
    with factory() as s:
        return s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.tip_id == tip_id, OutboxMessage.recipient_kind == "reporter")
            .order_by(OutboxMessage.id)
        ).all()


def _events(factory, tip_id, action=None):
    with factory() as s:
        query = select(TipEvent).where(TipEvent.tip_id == tip_id)
        if action:
            query = query.where(TipEvent.action == action)
        return s.scalars(query.order_by(TipEvent.id)).all()


REPEATS = {
    ("acknowledge", "acknowledged"),
    ("start", "in_progress"),
    ("resolve", "resolved"),
    ("reject", "rejected"),
    ("mark_duplicate", "duplicate"),
    ("reopen", "in_progress"),
    ("reopen", "acknowledged"),
}


def test_every_transition_through_apply_action(world):
    tip_id, original = world.submit(world.reporter), world.submit()
    params = {
        "assign": {"assignee_id": world.g1},
        "resolve": {"outcome": "confirmed"},
        "mark_duplicate": {"duplicate_of_id": original},
        "set_outcome": {"outcome": "malicious"},
    }
    for status in STAFF_STATUSES:
        for action in ACTIONS:
            with unit_of_work(world.factory) as s:  # put the tip in the starting state
                tip = s.get(Tip, tip_id)
                tip.status, tip.is_open = (
                    status,
                    status not in ("resolved", "rejected", "duplicate"),
                )
                tip.assignee_id = None
                tip.outcome = {"resolved": "confirmed", "rejected": "unfounded"}.get(status)
                tip.duplicate_of_id = original if status == "duplicate" else None
            before = len(_events(world.factory, tip_id))
            case = f"{action} on {status}"
            expected = EXPECTED.get((action, status))
            if expected is None and (action, status) not in REPEATS:
                with pytest.raises(InvalidTransition):
                    _act(world, tip_id, action, **params.get(action, {}))
                assert len(_events(world.factory, tip_id)) == before, case
                continue
            got = _act(world, tip_id, action, **params.get(action, {}))
            events = _events(world.factory, tip_id)
            if (action, status) in REPEATS:
                assert got == status, case
                assert len(events) == before, case
            else:
                assert got == expected, case
                assert len(events) == before + 1, case
                last = events[-1]
                assert (last.action, last.from_status, last.to_status) == (
                    action,
                    status,
                    expected,
                ), case
                assert last.actor_kind == "staff"


def test_resolve_needs_an_outcome(world):
    tip_id = world.submit()
    _act(world, tip_id, "acknowledge")
    with pytest.raises(InvalidAction) as info:
        _act(world, tip_id, "resolve")
    assert "outcome" in info.value.fields
    with world.factory() as s:
        assert s.get(Tip, tip_id).status == "acknowledged"


def test_transition_updates_the_row(world):
    tip_id = world.submit(world.reporter)
    with world.factory() as s:
        assert s.get(Tip, tip_id).next_escalation_at is not None
    _act(world, tip_id, "assign", assignee_id=world.g1, note=SECRET_NOTE)
    with world.factory() as s:
        tip = s.get(Tip, tip_id)
        assert tip.assignee_id == world.g1
        assert tip.acknowledged_at is not None
        assert tip.next_escalation_at is None  # the clock stops
    _act(world, tip_id, "resolve", outcome="unfounded")
    with world.factory() as s:
        tip = s.get(Tip, tip_id)
        assert (tip.status, tip.is_open, tip.outcome) == ("resolved", False, "unfounded")
        assert tip.resolved_at is not None
    _act(world, tip_id, "reopen")
    with world.factory() as s:
        tip = s.get(Tip, tip_id)
        assert (tip.status, tip.is_open, tip.outcome, tip.resolved_at) == (
            "in_progress",
            True,
            None,
            None,
        )
    events = _events(world.factory, tip_id, "assign")
    assert events[0].note == SECRET_NOTE
    assert events[0].data["assignee_id"] == world.g1


def test_double_click_applies_once(world):
    tip_id = world.submit(world.reporter)
    assert _act(world, tip_id, "acknowledge") == "acknowledged"
    assert _act(world, tip_id, "acknowledge") == "acknowledged"
    _act(world, tip_id, "resolve", outcome="confirmed")
    _act(world, tip_id, "resolve", outcome="confirmed")
    assert len(_events(world.factory, tip_id, "acknowledge")) == 1
    assert len(_events(world.factory, tip_id, "resolve")) == 1
    assert len(_reporter_rows(world.factory, tip_id)) == 2
    # Resolving again with another outcome is not a double click: it needs set_outcome.
    with pytest.raises(InvalidTransition):
        _act(world, tip_id, "resolve", outcome="malicious")


def test_concurrent_clicks_make_one_transition(world):
    tip_id = world.submit(world.reporter)
    threads_n = 6
    barrier = threading.Barrier(threads_n)
    results, errors = [], []

    def click(actor):
        barrier.wait()
        try:
            results.append(_act(world, tip_id, "acknowledge", actor_id=actor))
        except Exception as exc:
            errors.append(exc)

    actors = [world.admin, world.town, world.g1] * 2
    threads = [threading.Thread(target=click, args=(a,)) for a in actors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == ["acknowledged"] * threads_n
    assert len(_events(world.factory, tip_id, "acknowledge")) == 1
    assert len(_reporter_rows(world.factory, tip_id)) == 1


def test_reporter_hears_the_coarse_status_only(world):
    tip_id = world.submit(world.reporter)
    _act(world, tip_id, "acknowledge", note=SECRET_NOTE)
    _act(world, tip_id, "assign", assignee_id=world.g1, note=SECRET_NOTE)
    _act(world, tip_id, "start", actor_id=world.g1)
    _act(world, tip_id, "resolve", outcome="confirmed", note=SECRET_NOTE)
    _act(world, tip_id, "set_outcome", outcome="malicious", note=SECRET_NOTE)
    rows = _reporter_rows(world.factory, tip_id)
    # received -> in_handling (once, however many staff steps) -> closed.
    assert [r.params["status"] for r in rows] == ["in_handling", "closed"]
    with world.factory() as s:
        ref = s.get(Tip, tip_id).ref
    for row in rows:
        assert row.template == "reporter_status"
        assert row.recipient_id == world.reporter
        assert row.params == {"ref": ref, "status": row.params["status"]}
        flat = repr(row.params)
        for secret in (SECRET_NOTE, "confirmed", "malicious", "g1", "town"):
            assert secret not in flat


def test_anonymous_tips_get_no_outbox_row(world):
    tip_id = world.submit()
    _act(world, tip_id, "acknowledge")
    _act(world, tip_id, "resolve", outcome="confirmed")
    assert _reporter_rows(world.factory, tip_id) == []
    with pytest.raises(ReporterUnreachable) as info, unit_of_work(world.factory) as s:
        message_reporter(s, tip_id, actor_id=world.admin, text="谢谢")
    assert info.value.status == 422


def test_assignee_must_be_active_and_in_scope(world):
    tip_id = world.submit(grid="G1")
    for bad in (world.gone, world.g4, 999_999):
        with pytest.raises(InvalidAction) as info:
            _act(world, tip_id, "assign", assignee_id=bad)
        assert "assignee" in info.value.fields
    assert _act(world, tip_id, "assign", assignee_id=world.town) == "assigned"
    assert _act(world, tip_id, "assign", assignee_id=world.g1, actor_id=world.town) == "assigned"
    with world.factory() as s:
        told = s.scalars(
            select(OutboxMessage.recipient_id).where(
                OutboxMessage.tip_id == tip_id, OutboxMessage.template == "staff_assigned"
            )
        ).all()
    assert sorted(told) == sorted([world.town, world.g1])


def test_duplicates_need_another_tip_and_no_cycle(world):
    a, b = world.submit(), world.submit()
    with pytest.raises(InvalidAction):
        _act(world, a, "mark_duplicate", duplicate_of_id=a)
    with pytest.raises(InvalidAction):
        _act(world, a, "mark_duplicate", duplicate_of_id=999_999)
    assert _act(world, b, "mark_duplicate", duplicate_of_id=a) == "duplicate"
    with pytest.raises(InvalidAction) as info:
        _act(world, a, "mark_duplicate", duplicate_of_id=b)
    assert info.value.fields == {"duplicate_of": ["would make a cycle"]}
    assert _act(world, b, "reopen") == "acknowledged"
    with world.factory() as s:
        assert s.get(Tip, b).duplicate_of_id is None


def test_outcomes_move_the_reporters_trust(world):
    tip_id = world.submit(world.reporter)

    def trust():
        with world.factory() as s:
            return s.get(Reporter, world.reporter).trust_score

    assert trust() == 0.5
    _act(world, tip_id, "acknowledge")
    _act(world, tip_id, "resolve", outcome="confirmed")
    assert trust() == pytest.approx(trust_from_counts(closed=1, confirmed=1, malicious=0))
    _act(world, tip_id, "set_outcome", outcome="malicious")
    assert trust() == pytest.approx(trust_from_counts(closed=1, confirmed=0, malicious=1))
    assert trust() < 0.5
    _act(world, tip_id, "reopen")
    assert trust() == 0.5
    other = world.submit(world.reporter)
    _act(world, other, "reject", outcome="unfounded")
    assert trust() == pytest.approx(trust_from_counts(closed=1, confirmed=0, malicious=0))
    with pytest.raises(InvalidAction):  # a rejected tip cannot be "confirmed"
        _act(world, other, "set_outcome", outcome="confirmed")


def test_notes_messages_and_history(world):
    tip_id = world.submit(world.reporter)
    _act(world, tip_id, "assign", assignee_id=world.g1)
    with unit_of_work(world.factory) as s:
        add_note(s, tip_id, actor_id=world.g1, text=SECRET_NOTE)
        message_reporter(
            s, tip_id, actor_id=world.g1, text="Which gate?", template_code="need_more_info"
        )
    with pytest.raises(TipNotFound), unit_of_work(world.factory) as s:
        other = create_reporter(s, "volunteer")
        record_reporter_reply(s, tip_id, reporter_id=other.id, text="not mine")
    with unit_of_work(world.factory) as s:
        record_reporter_reply(s, tip_id, reporter_id=world.reporter, text="东门 <b>east</b>")
    with pytest.raises(InvalidAction), unit_of_work(world.factory) as s:
        add_note(s, tip_id, actor_id=world.g1, text="   ")

    with world.factory() as s:
        history = tip_history(s, tip_id)
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.tip_id == tip_id).order_by(OutboxMessage.id)
        ).all()
    assert [h["action"] for h in history] == [
        "submitted",
        "assign",
        "note",
        "message_to_reporter",
        "message_from_reporter",
    ]
    assign, note, out, back = history[1:]
    assert assign["actor"] == "boss"
    assert assign["data"]["assignee"] == "g1"
    assert (note["actor"], note["text"], note["is_message"]) == ("g1", SECRET_NOTE, False)
    # The template is rendered in the reporter's language (English), then the text.
    assert out["is_message"]
    assert out["text"].startswith("About tip")
    assert out["text"].endswith("\n\nWhich gate?")
    assert back["actor"].startswith("R-")
    assert back["text"] == "东门 <b>east</b>"

    to_reporter = [r for r in rows if r.template == "message_to_reporter"]
    assert len(to_reporter) == 1
    assert set(to_reporter[0].params) == {"ref", "text"}
    assert SECRET_NOTE not in repr([r.params for r in rows])
    reply_notice = [r for r in rows if r.template == "staff_reporter_reply"]
    assert [(r.recipient_kind, r.recipient_id) for r in reply_notice] == [("staff", world.g1)]
