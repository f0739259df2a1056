"""The response clock: due times at intake, escalation up the ladder, restarts and night routing."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from app.db import make_engine, make_session_factory, unit_of_work
from app.outbox.models import OutboxMessage
from app.people.models import StaffUser
from app.people.services import create_staff_user
from app.reports.clock import (
    clock_status,
    due_times,
    run_clock,
    seed_response_targets,
    set_response_target,
)
from app.reports.models import Tip, TipEvent
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.workflow import apply_action
from tests.layers import centre_of

DAY = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)  # 10:00 in the city
NIGHT = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)  # 23:00 in the city
MIN = dt.timedelta(minutes=1)


@pytest.fixture
def city(seeded, settings):
    """Targets (T1 is the centre town), staff on every rung of the ladder, and a submit helper."""
    with unit_of_work(seeded) as s:
        seed_response_targets(s, centre_town_code="T1")
        ids = {
            "g1": create_staff_user(s, "g1", "grid_worker", grids=["G1"]).id,
            "t1": create_staff_user(s, "t1", "supervisor", grids=["T1"]).id,
            "c": create_staff_user(s, "c", "supervisor", grids=["C"]).id,
            "admin": create_staff_user(s, "boss", "admin").id,
        }
        station = create_staff_user(s, "duty", "grid_worker", grids=["G2"])
        station.station = "测试派出所"  # the station of every grid in tests/layers.py
        ids["station"] = station.id
    store = LocalMediaStore(settings.media_dir)

    def submit(at: dt.datetime, grid: str | None = "G1", category="robbery_violence") -> int:
        fields = {"category": category, "description": "有人持刀抢劫 救命"}
        if grid:
            fields["latitude"], fields["longitude"] = centre_of(grid)
        with unit_of_work(seeded) as s:
            result = submit_tip(
                s, settings, store, fields=fields, uploads=[], channel="api", now=at
            )
            return s.scalar(select(Tip.id).where(Tip.ref == result.ref))

    return type("City", (), {**ids, "submit": staticmethod(submit), "factory": seeded})


def _run(factory, now) -> int:
    with unit_of_work(factory) as s:
        return run_clock(s, now=now)


def _escalations(factory, tip_id) -> list[tuple[int, int]]:
    """Return (level, recipient) of every escalation row of the tip, in order."""
    with factory() as s:
        rows = s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.tip_id == tip_id, OutboxMessage.template == "staff_escalation")
            .order_by(OutboxMessage.id)
        ).all()
    return [(r.params["level"], r.recipient_id) for r in rows]


def test_urgent_tip_escalates_to_town_then_city(city):
    t0 = DAY
    tip_id = city.submit(t0)
    with city.factory() as s:
        tip = s.get(Tip, tip_id)
        assert tip.priority == "urgent"
        # The centre town's target: 3 minutes, not the city-wide 5.
        assert tip.ack_due_at == t0 + 3 * MIN
        assert tip.next_escalation_at == tip.ack_due_at
        assert tip.resolve_due_at == t0 + 120 * MIN
        intake = s.scalars(
            select(OutboxMessage.recipient_id).where(OutboxMessage.template == "staff_new_tip")
        ).all()
    assert intake == [city.g1]  # level 0: the grid worker, at intake

    assert _run(city.factory, t0 + 2 * MIN) == 0
    assert _escalations(city.factory, tip_id) == []

    assert _run(city.factory, t0 + 3.5 * MIN) == 1
    assert _escalations(city.factory, tip_id) == [(1, city.t1)]
    assert _run(city.factory, t0 + 3.5 * MIN) == 0  # the same instant again: nothing new
    assert _escalations(city.factory, tip_id) == [(1, city.t1)]

    assert _run(city.factory, t0 + 7 * MIN) == 1
    assert _escalations(city.factory, tip_id) == [(1, city.t1), (2, city.c)]
    assert _run(city.factory, t0 + 7 * MIN) == 0
    assert _run(city.factory, t0 + 9 * MIN) == 0  # re-notify no more often than every 3 min

    with city.factory() as s:
        row = s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.tip_id == tip_id, OutboxMessage.recipient_id == city.c
            )
        ).one()
        assert row.params["minutes_overdue"] == 4
        assert row.params["priority"] == "urgent"
        assert row.dedupe_key == f"esc:{tip_id}:2:{city.c}"
        events = s.scalars(
            select(TipEvent).where(TipEvent.tip_id == tip_id, TipEvent.action == "escalated")
        ).all()
        assert [(e.actor_kind, e.data["level"], e.data["recipients"]) for e in events] == [
            ("system", 1, 1),
            ("system", 2, 1),
        ]

    assert _run(city.factory, t0 + 10 * MIN) == 1  # stays at the top: the city again
    assert _escalations(city.factory, tip_id)[-1] == (3, city.c)

    with unit_of_work(city.factory) as s:
        apply_action(s, tip_id, actor_id=city.t1, action="acknowledge", now=t0 + 11 * MIN)
    with city.factory() as s:
        tip = s.get(Tip, tip_id)
        assert tip.next_escalation_at is None
        status = clock_status(tip, t0 + 12 * MIN)
        assert status["ack_met"] is False
        assert status["escalation_level"] == 3
    assert _run(city.factory, t0 + 60 * MIN) == 0
    assert len(_escalations(city.factory, tip_id)) == 3


def test_clock_survives_a_restart(city, settings):
    t0 = DAY
    tip_id = city.submit(t0)
    assert _run(city.factory, t0 + 3.5 * MIN) == 1
    # A new process: a new engine and session factory, nothing shared but the database.
    engine = make_engine(settings.database_url)
    try:
        fresh = make_session_factory(engine)
        with fresh() as s:
            tip = s.get(Tip, tip_id)
            assert tip.escalation_level == 1
            assert tip.next_escalation_at == t0 + 6.5 * MIN
        assert _run(fresh, t0 + 5 * MIN) == 0
        assert _run(fresh, t0 + 6.5 * MIN) == 1
    finally:
        engine.dispose()
    assert _escalations(city.factory, tip_id) == [(1, city.t1), (2, city.c)]


def test_concurrent_runners_escalate_once(city):
    t0 = DAY
    tips = [city.submit(t0) for _ in range(5)]
    barrier = threading.Barrier(4)
    counts, errors = [], []

    def runner():
        barrier.wait()
        try:
            counts.append(_run(city.factory, t0 + 4 * MIN))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(counts) == len(tips)
    for tip_id in tips:
        assert _escalations(city.factory, tip_id) == [(1, city.t1)]


def test_night_escalations_also_go_to_the_police_station(city):
    tip_id = city.submit(NIGHT)
    assert _run(city.factory, NIGHT + 4 * MIN) == 1
    assert sorted(_escalations(city.factory, tip_id)) == sorted([(1, city.t1), (1, city.station)])
    day_tip = city.submit(DAY)
    assert _run(city.factory, DAY + 4 * MIN) == 1
    assert _escalations(city.factory, day_tip) == [(1, city.t1)]


def test_tip_without_a_grid_goes_to_the_city_supervisors(city):
    tip_id = city.submit(DAY, grid=None)
    with city.factory() as s:
        tip = s.get(Tip, tip_id)
        assert tip.grid_id is None
        assert tip.ack_due_at == DAY + 5 * MIN  # not in the centre town: the city-wide target
    assert _run(city.factory, DAY + 4 * MIN) == 0
    assert _run(city.factory, DAY + 5.5 * MIN) == 1
    assert _escalations(city.factory, tip_id) == [(1, city.c)]


def test_an_empty_rung_falls_through(city):
    with unit_of_work(city.factory) as s:
        for staff_id in (city.t1, city.c):
            s.get(StaffUser, staff_id).active = False
    tip_id = city.submit(DAY)
    assert _run(city.factory, DAY + 4 * MIN) == 1
    assert _escalations(city.factory, tip_id) == [(1, city.admin)]


def test_most_specific_target_wins(city):
    with unit_of_work(city.factory) as s:
        set_response_target(s, "high", ack_minutes=10, resolve_minutes=600)
        set_response_target(s, "high", ack_minutes=8, resolve_minutes=600, category_code="theft")
        set_response_target(s, "high", ack_minutes=7, resolve_minutes=600, area_code="T1")
        set_response_target(s, "high", ack_minutes=6, resolve_minutes=600, area_code="G1")
        set_response_target(
            s, "high", ack_minutes=4, resolve_minutes=600, category_code="theft", area_code="T1"
        )
    with city.factory() as s:
        conn = s.connection()

        def ack(category, path):
            due, _ = due_times(
                conn, priority="high", category_code=category, grid_path=path, received_at=DAY
            )
            return (due - DAY) / MIN

        assert ack("theft", "C/T1/V1/G1") == 4
        assert ack("suspicious", "C/T1/V1/G1") == 6
        assert ack("suspicious", "C/T1/V1/G2") == 7
        assert ack("theft", None) == 8
        assert ack("suspicious", None) == 10
        assert ack("theft", "C/T9/V9/G9") == 8
    # An edit is seen at once by this process (the cache is cleared by the edit).
    with unit_of_work(city.factory) as s:
        set_response_target(s, "high", ack_minutes=2, resolve_minutes=600, area_code="G1")
    with city.factory() as s:
        due, _ = due_times(
            s.connection(),
            priority="high",
            category_code="suspicious",
            grid_path="C/T1/V1/G1",
            received_at=DAY,
        )
        assert due == DAY + 2 * MIN


def test_seeding_is_idempotent(city):
    with unit_of_work(city.factory) as s:
        assert seed_response_targets(s, centre_town_code="T1") == 0
