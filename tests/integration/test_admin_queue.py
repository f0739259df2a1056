"""The triage queue: order, filters, keyset pages, the live refresh, pseudonyms only."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, select, update

from app.db import utcnow
from app.people.models import StaffUser
from app.people.services import create_reporter
from app.reports.models import PRIORITIES, Tip
from app.staff.queue import BadCursor, QueueFilters, queue_page
from app.staff.scope import viewer_for
from tests.integration.test_admin_support import (
    link_telegram,
    make_staff,
    make_tip,
    sign_in,
    tip_row,
)

T0 = utcnow().replace(microsecond=0) - dt.timedelta(minutes=30)


def set_priority(factory, ref, priority, *, ack_due_at=None):
    """Fix a tip's priority and clock (the triage rules are tested elsewhere)."""
    values = {"priority": priority, "priority_rank": PRIORITIES.index(priority)}
    if ack_due_at is not None:
        values["ack_due_at"] = ack_due_at
    with factory() as s:
        s.execute(update(Tip).where(Tip.ref == ref).values(**values))
        s.commit()


def _viewer(factory, username):
    s = factory()
    return s, viewer_for(s, s.scalar(select(StaffUser).where(StaffUser.username == username)))


@pytest.fixture
def tips(app, seeded, settings):
    """Tips of every priority at known times; returns refs in the expected queue order."""
    make_staff(seeded, "town", "supervisor", ["T1"])
    specs = [  # grid, category, priority, minutes after T0 (received; ack due 5 min later)
        ("G2", "robbery_violence", "urgent", 5),
        ("G1", "robbery_violence", "urgent", 0),
        ("G3", "theft", "high", 0),
        ("G4", "traffic", "normal", 0),
        ("G1", "public_facility", "low", 0),
    ]
    refs = []
    for grid, category, priority, minutes in specs:
        at = T0 + dt.timedelta(minutes=minutes)
        ref = make_tip(
            seeded,
            settings,
            grid=grid,
            category=category,
            description=f"{category} {minutes}",
            now=at,
        )
        set_priority(seeded, ref, priority, ack_due_at=at + dt.timedelta(minutes=5))
        refs.append(ref)
    late_urgent, early_urgent, high, normal, low = refs
    return [early_urgent, late_urgent, high, normal, low]


def test_queue_orders_by_priority_then_time_left(seeded, tips):
    s, viewer = _viewer(seeded, "town")
    with s:
        assert [r.tip.ref for r in queue_page(s, viewer).rows] == tips


def test_keyset_pages_cover_the_queue_without_offset(seeded, settings, tips, engine):
    # Tips without a clock sort last within their priority, on both databases.
    extra = [
        make_tip(seeded, settings, grid="G2", category="theft", description=f"偷{i}")
        for i in range(3)
    ]
    for ref in extra:
        set_priority(seeded, ref, "high")
    with seeded() as s:
        s.execute(update(Tip).where(Tip.ref.in_(extra[:2])).values(ack_due_at=None))
        s.commit()
    statements = []
    listener = lambda *args: statements.append((args[2], args[3]))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    s, viewer = _viewer(seeded, "town")
    try:
        with s:
            full = [r.tip.ref for r in queue_page(s, viewer, limit=100).rows]
            seen, after = [], None
            while True:
                page = queue_page(s, viewer, after=after, limit=3)
                seen += [r.tip.ref for r in page.rows]
                if page.next_cursor is None:
                    break
                after = page.next_cursor
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert seen == full and len(full) == 8
    highs = [r for r in full if r in (tips[2], *extra)]
    assert highs[-2:] == sorted(extra[:2], key=lambda r: full.index(r))  # NULL clocks last
    assert set(highs[-2:]) == set(extra[:2])
    # SQLite spells every LIMIT as "LIMIT ? OFFSET ?" with 0; nothing may skip rows.
    offsets = [params[-1] for sql, params in statements if "OFFSET" in sql.upper()]
    assert all(o == 0 for o in offsets)
    with pytest.raises(BadCursor):
        queue_page(seeded(), viewer, after="not-a-cursor")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (QueueFilters(priority="urgent"), [0, 1]),
        (QueueFilters(category="theft"), [2]),
        (QueueFilters(grid="G1"), [0, 4]),
        (QueueFilters(grid="T1"), [0, 1, 2, 3, 4]),
        (QueueFilters(grid="none"), []),
        (QueueFilters(grid="NOPE"), []),
        (QueueFilters(channel="telegram"), []),
        (QueueFilters(channel="api"), [0, 1, 2, 3, 4]),
        (QueueFilters(received_from=T0 + dt.timedelta(minutes=1)), [1]),
        (QueueFilters(received_to=T0 + dt.timedelta(minutes=1)), [0, 2, 3, 4]),
        (QueueFilters(statuses=("resolved",)), []),
    ],
)
def test_queue_filters(seeded, tips, filters, expected):
    s, viewer = _viewer(seeded, "town")
    with s:
        assert [r.tip.ref for r in queue_page(s, viewer, filters=filters).rows] == [
            tips[i] for i in expected
        ]


def test_flagged_status_and_mine_filters(seeded, settings, tips):
    with seeded() as s:
        s.execute(update(Tip).values(flags=[]))
        s.execute(update(Tip).where(Tip.ref == tips[3]).values(flags=["repeat_text"]))
        me = s.scalar(select(StaffUser.id).where(StaffUser.username == "town"))
        s.execute(update(Tip).where(Tip.ref == tips[2]).values(status="assigned", assignee_id=me))
        s.commit()
    s, viewer = _viewer(seeded, "town")
    with s:

        def refs(**kw):
            return [r.tip.ref for r in queue_page(s, viewer, filters=QueueFilters(**kw)).rows]

        assert refs(flagged=True) == [tips[3]]
        assert refs(assigned_to_me=True) == [tips[2]]
        assert refs(statuses=("assigned",)) == [tips[2]]
        assert refs(statuses=("new", "assigned")) == tips


def test_queue_page_filters_and_pages_over_http(app, client, seeded, tips):
    sign_in(client, "town")
    html = client.get("/admin/").get_data(as_text=True)
    positions = [html.index(ref) for ref in tips]
    assert positions == sorted(positions)  # urgent at the top
    assert "签收剩余" in html or "签收已超时" in html
    only_g1 = client.get("/admin/?grid=G1&status=new").get_data(as_text=True)
    assert tips[0] in only_g1 and tips[1] not in only_g1
    assert client.get("/admin/?status=bogus").status_code == 422
    assert client.get("/admin/?after=garbage").status_code == 400
    assert client.get("/admin/?from=2026-01-01&to=2026-13-01").status_code == 422


def test_live_refresh_reports_new_urgent_tips(app, client, seeded, settings, tips):
    sign_in(client, "town")
    html = client.get("/admin/").get_data(as_text=True)
    since = html.split('data-since="')[1].split('"')[0]
    assert client.get(f"/admin/queue/updates.json?since={since}").get_json() == {
        "new": 0,
        "urgent": [],
    }
    fresh = make_tip(seeded, settings, grid="G3", category="fire_hazard", description="着火了 fire")
    assert tip_row(seeded, fresh).priority == "urgent"
    feed = client.get(f"/admin/queue/updates.json?since={since}")
    assert feed.headers["Cache-Control"] == "no-store"
    data = feed.get_json()
    assert data["new"] == 1
    assert data["urgent"][0]["ref"] == fresh
    assert data["urgent"][0]["url"] == f"/admin/tips/{fresh}"
    assert 'src="/admin/static/queue.js"' in html


def test_staff_see_pseudonyms_never_channel_identities(app, client, seeded, settings):
    make_staff(seeded, "town", "supervisor", ["T1"])
    with seeded() as s:
        reporter = create_reporter(s, "taxi_driver")
        link_telegram(s, reporter.id, "987654321")
        s.commit()
        pseudonym, reporter_id = reporter.pseudonym, reporter.id
    ref = make_tip(seeded, settings, reporter_id=reporter_id)
    sign_in(client, "town")
    for path in ("/admin/", f"/admin/tips/{ref}"):
        html = client.get(path).get_data(as_text=True)
        assert pseudonym in html
        assert "987654321" not in html
