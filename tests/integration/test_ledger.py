"""The points ledger on a real database: once per (tip, rule), reversals, cap, approvals, notices.

QUALITY.md case 36 runs here on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from itertools import count

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from app.db import insert_unless_exists, unit_of_work
from app.identifiers import CROCKFORD
from app.migrate import upgrade
from app.outbox.models import OutboxMessage
from app.people.models import AuditEntry, Organisation
from app.people.services import create_reporter, create_staff_user, issue_reporter_token
from app.reports.categories import seed_categories
from app.reports.models import Category, Incident, Tip
from app.rewards.errors import RequestSettled, SecondApproverRequired
from app.rewards.models import PointBalance, PointEntry, PointRequest
from app.rewards.notices import digest_text
from app.rewards.services import (
    apply_outcome,
    balance_mismatches,
    decide_request,
    pending_requests,
    set_rule,
    set_setting,
)

NOW = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
_refs = count(random.randrange(32**5))  # distinct within the run, from a random start


def new_ref() -> str:
    """Make a distinct, valid tip reference for test rows."""
    n = next(_refs)
    chars = []
    for _ in range(6):
        n, r = divmod(n, 32)
        chars.append(CROCKFORD[r])
    return "T-" + "".join(chars)


def make_tip(
    session,
    reporter_id: int | None,
    *,
    priority: str = "normal",
    status: str = "in_progress",
    outcome: str | None = None,
    grid_path: str | None = "C/T1/V1/G1",
    incident_id: int | None = None,
    received_at: dt.datetime = NOW,
) -> Tip:
    """Insert a tip row as triage would leave it (no photos, no routing work)."""
    tip = Tip(
        ref=new_ref(),
        reporter_id=reporter_id,
        channel="api",
        category_id=session.scalar(select(Category.id).where(Category.code == "theft")),
        description="test",
        received_at=received_at,
        routing_reason="inside",
        priority=priority,
        priority_rank={"urgent": 0, "high": 1, "normal": 2, "low": 3}[priority],
        status=status,
        outcome=outcome,
        grid_path=grid_path,
        incident_id=incident_id,
        updated_at=received_at,
    )
    session.add(tip)
    session.flush()
    return tip


def decide(session, tip_id: int, *, status: str, outcome: str | None, actor_id: int, now=NOW):
    """Do what the workflow does on an outcome transition: change the tip, then apply it."""
    session.execute(update(Tip).where(Tip.id == tip_id).values(status=status, outcome=outcome))
    return apply_outcome(session, tip_id, actor_id=actor_id, now=now)


def ledger(session, tip_id: int) -> list[tuple]:
    """Return (kind, rule, seq, points, reverses_id) of a tip's entries in order."""
    e = PointEntry
    return [
        tuple(r)
        for r in session.execute(
            select(e.kind, e.rule_code, e.seq, e.points, e.reverses_id)
            .where(e.tip_id == tip_id)
            .order_by(e.id)
        )
    ]


def balance(session, reporter_id: int) -> int:
    return session.scalar(
        select(func.coalesce(func.sum(PointEntry.points), 0)).where(
            PointEntry.reporter_id == reporter_id
        )
    )


@pytest.fixture
def people(seeded):
    """Two approvers and a reporter in an enterprise."""
    with unit_of_work(seeded) as s:
        org = Organisation(name="示范化工厂", kind="enterprise")
        s.add(org)
        s.flush()
        a = create_staff_user(s, "approver_a", "supervisor")
        b = create_staff_user(s, "approver_b", "admin")
        r = create_reporter(s, "enterprise_guard", organisation_id=org.id)
        return {"a": a.id, "b": b.id, "reporter": r.id, "org": org.id}


# --- QUALITY.md case 36 -------------------------------------------------------------------
@pytest.mark.slow
def test_concurrent_approvals_write_each_award_once(seeded):
    """4 approvers, the same 200 tips, double clicks and retries: one entry per (tip, rule)."""
    with unit_of_work(seeded) as s:
        approvers = [create_staff_user(s, f"ap{i}", "supervisor").id for i in range(4)]
        reporters = [create_reporter(s, "taxi_driver").id for _ in range(20)]
        tips = {}
        for i in range(200):
            tip = make_tip(s, reporters[i % 20], priority="urgent" if i % 5 == 0 else "normal")
            tips[tip.id] = tip.reporter_id
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def approve_all(n: int) -> None:
        rng = random.Random(n)
        order = list(tips)
        rng.shuffle(order)
        try:
            barrier.wait()
            for tip_id in order:
                if rng.random() < 0.2:  # the connection drops before the commit: a retry follows
                    with seeded() as s:
                        decide(
                            s, tip_id, status="resolved", outcome="confirmed", actor_id=approvers[n]
                        )
                        s.rollback()
                for _click in range(2):  # a double click
                    with unit_of_work(seeded) as s:
                        decide(
                            s, tip_id, status="resolved", outcome="confirmed", actor_id=approvers[n]
                        )
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)

    threads = [threading.Thread(target=approve_all, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []

    e = PointEntry
    with seeded() as s:
        dupes = s.execute(
            select(e.tip_id, e.rule_code, func.count())
            .group_by(e.tip_id, e.rule_code)
            .having(func.count() > 1)
        ).all()
        assert dupes == []
        # confirmed + resolution on every tip, the urgent bonus on one in five
        assert s.scalar(select(func.count()).select_from(e)) == 200 * 2 + 40
        assert s.scalar(select(func.count()).where(e.kind == "reversal")) == 0
        assert balance_mismatches(s) == []
        per_reporter = {r: 0 for r in reporters}
        for i, (_tip_id, reporter_id) in enumerate(sorted(tips.items())):
            per_reporter[reporter_id] += 15 + (10 if i % 5 == 0 else 0)
        for reporter_id, expected in per_reporter.items():
            assert balance(s, reporter_id) == expected
            assert (
                s.scalar(
                    select(PointBalance.balance).where(PointBalance.reporter_id == reporter_id)
                )
                == expected
            )
        before = s.scalar(select(func.count()).select_from(e))
        first_ids = set(s.scalars(select(e.id)))

    # Re-triage 20 tips to unfounded from two approvers at once: reversals are new entries.
    retriaged = sorted(tips)[:20]

    def retriage(n: int) -> None:
        try:
            for tip_id in retriaged:
                with unit_of_work(seeded) as s:
                    decide(s, tip_id, status="rejected", outcome="unfounded", actor_id=approvers[n])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=retriage, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    with seeded() as s:
        assert first_ids <= set(s.scalars(select(e.id)))  # nothing deleted
        reversals = s.scalar(select(func.count()).where(e.kind == "reversal"))
        urgent_retriaged = sum(
            1 for i, t in enumerate(sorted(tips)) if t in retriaged and i % 5 == 0
        )
        assert reversals == 20 * 2 + urgent_retriaged
        # plus one zero-point "unfounded" entry per re-triaged tip
        assert s.scalar(select(func.count()).select_from(e)) == before + reversals + 20
        assert balance_mismatches(s) == []


def test_on_conflict_keeps_the_first_of_two_racing_transactions(seeded, people):
    """Two open transactions insert the same award key: the second waits, then does nothing."""
    with unit_of_work(seeded) as s:
        tip_id = make_tip(s, people["reporter"]).id
    row = {
        "kind": "award",
        "reporter_id": people["reporter"],
        "tip_id": tip_id,
        "rule_code": "tip_confirmed",
        "seq": 0,
        "points": 10,
        "reason": "rule_applies",
        "created_at": NOW,
        "period": "2026-11",
    }
    first = seeded()
    assert insert_unless_exists(first.connection(), PointEntry.__table__, row) is not None
    result = {}

    def second() -> None:
        with unit_of_work(seeded) as s:
            result["id"] = insert_unless_exists(s.connection(), PointEntry.__table__, row)

    thread = threading.Thread(target=second)
    thread.start()
    first.commit()
    first.close()
    thread.join()
    assert result == {"id": None}
    with seeded() as s, pytest.raises(IntegrityError):
        s.execute(PointEntry.__table__.insert(), row)  # a plain INSERT is refused outright


# --- re-triage, duplicates, incidents -----------------------------------------------------
def test_retriage_reverses_and_awards_again_once_per_change(seeded, people):
    a = people["a"]
    with unit_of_work(seeded) as s:
        tip_id = make_tip(s, people["reporter"]).id
    for _ in range(2):  # every step is clicked twice
        with unit_of_work(seeded) as s:
            decide(s, tip_id, status="resolved", outcome="confirmed", actor_id=a)
    for _ in range(2):
        with unit_of_work(seeded) as s:
            decide(s, tip_id, status="resolved", outcome="unfounded", actor_id=a)
    for _ in range(2):
        with unit_of_work(seeded) as s:
            decide(s, tip_id, status="resolved", outcome="confirmed", actor_id=a)
    with seeded() as s:
        entries = ledger(s, tip_id)
        ids = list(
            s.scalars(
                select(PointEntry.id).where(PointEntry.tip_id == tip_id).order_by(PointEntry.id)
            )
        )
        assert entries == [
            ("award", "led_to_resolution", 0, 5, None),
            ("award", "tip_confirmed", 0, 10, None),
            ("reversal", "led_to_resolution", 0, -5, ids[0]),
            ("reversal", "tip_confirmed", 0, -10, ids[1]),
            ("award", "unfounded", 0, 0, None),
            ("award", "led_to_resolution", 1, 5, None),
            ("award", "tip_confirmed", 1, 10, None),
            ("reversal", "unfounded", 0, 0, ids[4]),
        ]
        assert balance(s, people["reporter"]) == 15
        assert balance_mismatches(s) == []


def test_reopen_without_outcome_reverses_everything(seeded, people):
    with unit_of_work(seeded) as s:
        tip_id = make_tip(s, people["reporter"], priority="urgent").id
        decide(s, tip_id, status="resolved", outcome="confirmed", actor_id=people["a"])
    with unit_of_work(seeded) as s:
        assert balance(s, people["reporter"]) == 25
        decide(s, tip_id, status="in_progress", outcome=None, actor_id=people["a"])
    with seeded() as s:
        assert balance(s, people["reporter"]) == 0
        assert [k for k, *_ in ledger(s, tip_id)].count("reversal") == 3


def test_first_reporter_bonus_and_later_duplicates_get_zero(seeded, people):
    a = people["a"]
    with unit_of_work(seeded) as s:
        other = create_reporter(s, "volunteer").id
        incident = Incident(category_id=s.scalar(select(Category.id)))
        s.add(incident)
        s.flush()
        first = make_tip(s, people["reporter"], incident_id=incident.id)
        later = make_tip(s, other, incident_id=incident.id)
        dup = make_tip(s, other, incident_id=incident.id)
        incident.first_tip_id = first.id
        s.flush()
        decide(s, first.id, status="resolved", outcome="confirmed", actor_id=a)
        decide(s, later.id, status="resolved", outcome="confirmed", actor_id=a)
        decide(s, dup.id, status="duplicate", outcome=None, actor_id=a)
        ids = first.id, later.id, dup.id
    with seeded() as s:
        assert {r[1]: r[3] for r in ledger(s, ids[0])} == {
            "first_reporter": 5,
            "led_to_resolution": 5,
            "tip_confirmed": 10,
        }
        assert {r[1]: r[3] for r in ledger(s, ids[1])} == {
            "later_duplicate": 0,
            "led_to_resolution": 5,
            "tip_confirmed": 10,
        }
        assert ledger(s, ids[2]) == [("award", "later_duplicate", 0, 0, None)]
        assert (
            s.scalar(select(func.min(PointEntry.points)).where(PointEntry.tip_id.in_(ids[1:]))) == 0
        )


def test_anonymous_tips_earn_nothing(seeded, people):
    with unit_of_work(seeded) as s:
        tip_id = make_tip(s, None).id
        assert decide(s, tip_id, status="resolved", outcome="confirmed", actor_id=people["a"]) == []


# --- cap, second approval, rule edits -----------------------------------------------------
def test_the_period_cap_limits_positive_points_and_a_reversal_frees_room(seeded, people):
    a, reporter = people["a"], people["reporter"]
    with unit_of_work(seeded) as s:
        set_setting(s, "period_cap", 25, actor_id=people["b"])
        tips = [make_tip(s, reporter).id for _ in range(3)]
    with unit_of_work(seeded) as s:
        for tip_id in tips[:2]:
            decide(s, tip_id, status="rejected", outcome=None, actor_id=a)  # nothing yet
            decide(s, tip_id, status="resolved", outcome="confirmed", actor_id=a)
    with unit_of_work(seeded) as s:
        assert balance(s, reporter) == 25  # 15 + 10 of the second tip's 15
        capped = s.scalars(select(PointEntry).where(PointEntry.reason == "capped")).all()
        assert [(c.rule_code, c.points, c.detail["rule_points"]) for c in capped] == [
            ("tip_confirmed", 5, 10)
        ]
        decide(s, tips[0], status="resolved", outcome="unfounded", actor_id=a)
    with unit_of_work(seeded) as s:
        assert balance(s, reporter) == 10
        decide(s, tips[2], status="resolved", outcome="confirmed", actor_id=a)
    with seeded() as s:
        assert balance(s, reporter) == 25
        assert balance_mismatches(s) == []


def test_large_entries_wait_for_a_second_approver(seeded, people):
    a, b, reporter = people["a"], people["b"], people["reporter"]
    with unit_of_work(seeded) as s:
        tip_id = make_tip(s, reporter).id
        assert decide(s, tip_id, status="rejected", outcome="malicious", actor_id=a) == []
        assert decide(s, tip_id, status="rejected", outcome="malicious", actor_id=a) == []
    with unit_of_work(seeded) as s:
        (request,) = pending_requests(s)
        assert (request.rule_code, request.points, request.state) == ("malicious", -20, "pending")
        assert balance(s, reporter) == 0  # pending entries are not in the balance
        with pytest.raises(SecondApproverRequired):
            decide_request(s, request.id, approver_id=a, approve=True)
    with unit_of_work(seeded) as s:
        entry_id = decide_request(s, request.id, approver_id=b, approve=True)
        entry = s.get(PointEntry, entry_id)
        assert (entry.points, entry.actor_id, entry.approver_id) == (-20, a, b)
    with unit_of_work(seeded) as s:
        assert balance(s, reporter) == -20
        with pytest.raises(RequestSettled):
            decide_request(s, request.id, approver_id=b, approve=True)
    # Re-triage to confirmed: the approved penalty is reversed like any award.
    with unit_of_work(seeded) as s:
        decide(s, tip_id, status="resolved", outcome="confirmed", actor_id=b)
    with seeded() as s:
        assert balance(s, reporter) == 15
        assert balance_mismatches(s) == []


def test_a_pending_request_closes_when_the_outcome_changes_and_can_reopen(seeded, people):
    a, b, reporter = people["a"], people["b"], people["reporter"]
    with unit_of_work(seeded) as s:
        tip_id = make_tip(s, reporter).id
        decide(s, tip_id, status="rejected", outcome="malicious", actor_id=a)
        decide(s, tip_id, status="rejected", outcome="unfounded", actor_id=a)
        assert pending_requests(s) == []
        (closed,) = s.scalars(select(PointRequest)).all()
        with pytest.raises(RequestSettled):
            decide_request(s, closed.id, approver_id=b, approve=True)
        decide(s, tip_id, status="rejected", outcome="malicious", actor_id=a)
        (again,) = pending_requests(s)
        assert again.seq == closed.seq + 1
        decide_request(s, again.id, approver_id=b, approve=False)
        decide(s, tip_id, status="rejected", outcome="malicious", actor_id=a)  # a repeat
        assert pending_requests(s) == []
        assert balance(s, reporter) == 0


def test_rule_edits_apply_to_new_entries_and_are_audited(seeded, people):
    a, b, reporter = people["a"], people["b"], people["reporter"]
    with unit_of_work(seeded) as s:
        first = make_tip(s, reporter).id
        decide(s, first, status="resolved", outcome="confirmed", actor_id=a)
        set_rule(s, "tip_confirmed", points=12, active=True, actor_id=b)
        set_rule(s, "led_to_resolution", points=0, active=False, actor_id=b)
        second = make_tip(s, reporter).id
        decide(s, second, status="resolved", outcome="confirmed", actor_id=a)
    with seeded() as s:
        assert {r[1]: r[3] for r in ledger(s, first)} == {
            "tip_confirmed": 10,
            "led_to_resolution": 5,
        }
        assert {r[1]: r[3] for r in ledger(s, second)} == {"tip_confirmed": 12}
        actions = s.scalars(select(AuditEntry.action)).all()
        assert actions.count("reward_rule_changed") == 2


# --- append-only --------------------------------------------------------------------------
def _one_entry(seeded, people) -> int:
    with unit_of_work(seeded) as s:
        tip_id = make_tip(s, people["reporter"]).id
        (entry_id, *_rest) = decide(
            s, tip_id, status="resolved", outcome="confirmed", actor_id=people["a"]
        )
    return entry_id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE point_entries SET points = 1000 WHERE id = :id",
        "DELETE FROM point_entries WHERE id = :id",
    ],
)
def test_the_ledger_refuses_update_and_delete(seeded, people, statement):
    entry_id = _one_entry(seeded, people)
    with seeded() as s, pytest.raises(IntegrityError, match="append-only"):
        s.execute(text(statement), {"id": entry_id})
    with seeded() as s:
        assert s.get(PointEntry, entry_id).points in (5, 10)


@pytest.mark.postgres
def test_postgresql_migration_trigger_refuses_update_delete_truncate(pg_schema_url):
    """The trigger comes from migration 0004 itself, not only from create_all."""
    from app.db import make_engine, make_session_factory

    engine = make_engine(pg_schema_url)
    upgrade(engine, "head")
    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:
        seed_categories(s)
        reporter = create_reporter(s, "volunteer").id
        staff = create_staff_user(s, "pg_a", "supervisor").id
        tip_id = make_tip(s, reporter, grid_path=None).id
        decide(s, tip_id, status="resolved", outcome="confirmed", actor_id=staff)
    for statement in (
        "UPDATE point_entries SET points = points + 1",
        "DELETE FROM point_entries",
        "TRUNCATE point_entries CASCADE",
    ):
        with factory() as s, pytest.raises(IntegrityError, match="append-only"):
            s.execute(text(statement))
    with factory() as s:
        assert s.scalar(select(func.sum(PointEntry.points))) == 15
    engine.dispose()


# --- notices and the reporter's view ------------------------------------------------------
def test_points_notices_are_one_daily_digest_per_reporter(seeded, people):
    a, reporter = people["a"], people["reporter"]
    with unit_of_work(seeded) as s:
        tips = [make_tip(s, reporter).id for _ in range(3)]
        for i, tip_id in enumerate(tips):
            decide(
                s,
                tip_id,
                status="resolved",
                outcome="confirmed",
                actor_id=a,
                now=NOW + dt.timedelta(minutes=i),
            )
    with unit_of_work(seeded) as s:
        decide(
            s,
            tips[0],
            status="resolved",
            outcome="unfounded",
            actor_id=a,
            now=NOW + dt.timedelta(hours=5),
        )
    with seeded() as s:
        rows = s.scalars(select(OutboxMessage)).all()
        digests = [r for r in rows if r.template == "points_digest"]
        assert len(digests) == 2  # 09:30 goes into today's 12:00 digest, 14:30 into tomorrow's
        first, second = sorted(digests, key=lambda r: r.next_attempt_at)
        assert first.next_attempt_at == dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
        assert second.next_attempt_at == dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
        assert (first.recipient_kind, first.recipient_id, first.tip_id) == (
            "reporter",
            reporter,
            None,
        )
        text_zh = digest_text(s, reporter, first.params, "zh")
        assert "+45" in text_zh and "45" in text_zh.splitlines()[-1]
        text_en = digest_text(s, reporter, second.params, "en")
        assert "-15" in text_en and "balance 30" in text_en
        from app.outbox.render import render_message

        assert "/points" in render_message("points_digest", first.params, "zh")


def test_me_shows_points_and_own_rank_among_the_same_role(client, seeded, people):
    a = people["a"]
    with unit_of_work(seeded) as s:
        rival = create_reporter(s, "enterprise_guard").id
        create_reporter(s, "taxi_driver")  # another role: not a peer
        mine = make_tip(s, people["reporter"]).id
        theirs = make_tip(s, rival, priority="urgent").id
        now = dt.datetime.now(dt.UTC)
        decide(s, mine, status="resolved", outcome="confirmed", actor_id=a, now=now)
        decide(s, theirs, status="resolved", outcome="confirmed", actor_id=a, now=now)
        token = issue_reporter_token(s, people["reporter"])
    resp = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.json
    points = resp.json["points"]
    assert points == {
        "balance": 15,
        "period": now.strftime("%Y-%m"),
        "period_points": 15,
        "rank": 2,
        "rank_of": 2,
    }
    year = client.get(f"/api/v1/me?period={now.year}", headers={"Authorization": f"Bearer {token}"})
    assert year.json["points"]["period"] == str(now.year)
    bad = client.get("/api/v1/me?period=2026-13", headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 422 and bad.json["code"] == "invalid_period"
