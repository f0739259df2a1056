"""The queue's rows: every name a line shows comes with the page, in one statement."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, insert, select, update

from app.grids.models import Grid
from app.people.models import StaffUser
from app.people.services import create_reporter
from app.reports.models import Category, Tip
from app.staff.queue import latest_visible_id, new_open_tips, queue_page
from app.staff.scope import viewer_for
from tests.integration.test_admin_support import make_staff, make_tip


def _town(factory):
    s = factory()
    return s, viewer_for(s, s.scalar(select(StaffUser).where(StaffUser.username == "town")))


def _count_statements(engine):
    """Collect the SQL statements sent while the returned list is being listened to."""
    statements: list[str] = []

    def listener(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    return statements, lambda: event.remove(engine, "before_cursor_execute", listener)


def test_a_page_names_category_grid_reporter_and_assignee_in_one_statement(
    seeded, settings, engine
):
    town = make_staff(seeded, "town", "supervisor", ["T1"])
    with seeded() as s:
        pseudonym, reporter_id = (r := create_reporter(s, "volunteer")).pseudonym, r.id
        s.commit()
    plain = make_tip(seeded, settings, grid="G3", category="theft", description="bike gone")
    named = make_tip(seeded, settings, grid="G1", reporter_id=reporter_id)
    unrouted = make_tip(seeded, settings, grid=None, category="traffic", description="pothole")
    with seeded() as s:
        s.execute(update(Tip).where(Tip.ref == named).values(assignee_id=town, flags=["x"]))
        s.commit()
        expected = {
            ref: (cat.code, cat.name_zh, cat.name_en, grid_code, grid_name)
            for ref, cat, grid_code, grid_name in s.execute(
                select(Tip.ref, Category, Grid.code, Grid.name)
                .join(Category, Category.id == Tip.category_id)
                .outerjoin(Grid, Grid.id == Tip.grid_id)
            ).all()
        }
    s, viewer = _town(seeded)
    with s:
        queue_page(s, viewer)  # begins the transaction and fills the category cache
        statements, stop = _count_statements(engine)
        try:
            page = queue_page(s, viewer)
        finally:
            stop()
        assert len(statements) == 1  # no lazy loads, no lookup per row
        rows = {r.tip.ref: r for r in page.rows}
        assert set(rows) == {plain, named, unrouted}
        for ref, row in rows.items():
            shown = (row.category_code, row.category_zh, row.category_en)
            assert (*shown, row.grid_code, row.grid_name) == expected[ref]
        assert expected[unrouted][3:] == (None, None)
        assert (rows[named].pseudonym, rows[named].assignee) == (pseudonym, "town")
        assert (rows[plain].pseudonym, rows[plain].assignee) == (None, None)
        tip = rows[named].tip
        assert tip.flags == ["x"] and rows[plain].tip.flags == []
        assert tip.received_at.tzinfo is dt.UTC and tip.ack_due_at.tzinfo is dt.UTC
        assert tip.is_open is True and tip.status == "new"


def test_a_category_added_by_another_process_is_named_at_once(seeded, settings):
    make_staff(seeded, "town", "supervisor", ["T1"])
    ref = make_tip(seeded, settings, grid="G2", category="theft")
    s, viewer = _town(seeded)
    with s:
        assert queue_page(s, viewer).rows[0].category_code == "theft"  # cached from here on
    with seeded() as s:
        # Another process's seed: a plain INSERT this process's cache has not seen.
        category_id = s.execute(
            insert(Category)
            .values(
                code="noise",
                name_zh="噪音扰民",
                name_en="Noise",
                severity=1,
                ack_minutes=60,
                resolve_minutes=1440,
            )
            .returning(Category.id)
        ).scalar_one()
        s.execute(update(Tip).where(Tip.ref == ref).values(category_id=category_id))
        s.commit()
    s, viewer = _town(seeded)
    with s:
        row = queue_page(s, viewer).rows[0]
        fresh = new_open_tips(s, viewer, after_id=0)
    assert (row.tip.ref, row.category_code, row.category_zh, row.category_en) == (
        ref,
        "noise",
        "噪音扰民",
        "Noise",
    )
    assert [(r.tip.ref, r.category_en) for r in fresh] == [(ref, "Noise")]


def test_live_refresh_rows_are_named_and_scoped(seeded, settings):
    make_staff(seeded, "town", "supervisor", ["T1"])
    make_staff(seeded, "g4", "grid_worker", ["G4"])
    s, viewer = _town(seeded)
    with s:
        since = latest_visible_id(s, viewer)
    g1 = make_tip(seeded, settings, grid="G1", category="fire_hazard")
    g4 = make_tip(seeded, settings, grid="G4", category="fire_hazard")
    with seeded() as s:
        worker = viewer_for(s, s.scalar(select(StaffUser).where(StaffUser.username == "g4")))
        town_rows = new_open_tips(s, viewer, after_id=since)
        worker_rows = new_open_tips(s, worker, after_id=since)
        names = dict(s.execute(select(Grid.code, Grid.name)).all())
    assert [(r.tip.ref, r.category_code, r.grid_code, r.grid_name) for r in town_rows] == [
        (g1, "fire_hazard", "G1", names["G1"]),
        (g4, "fire_hazard", "G4", names["G4"]),
    ]
    assert [(r.tip.ref, r.grid_name) for r in worker_rows] == [(g4, names["G4"])]
