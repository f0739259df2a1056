"""Scoping (QUALITY.md 25, 26): out of scope is 404 everywhere, uncounted, unchanged on writes."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.people.models import StaffUser
from app.reports.errors import TipNotFound
from app.reports.models import Photo, TipEvent
from app.staff.queue import open_counts, queue_page
from app.staff.scope import viewer_for, visible_tip
from tests.integration.test_admin_support import (
    make_staff,
    make_tip,
    page_csrf,
    sign_in,
    tip_row,
)


@pytest.fixture
def world(app, seeded, settings):
    """Staff at every level and tips in G1, G2 and without a grid."""
    make_staff(seeded, "admin", "admin")
    make_staff(seeded, "city", "supervisor", ["C"])
    make_staff(seeded, "town", "supervisor", ["T1"])
    make_staff(seeded, "elsewhere", "supervisor", ["T9"])  # a town with no tips here
    make_staff(seeded, "g1", "grid_worker", ["G1"])
    make_staff(seeded, "g2", "grid_worker", ["G2"])
    return {
        "g1": make_tip(seeded, settings, grid="G1", photos=1),
        "g2": make_tip(seeded, settings, grid="G2", category="theft", description="电瓶被盗"),
        "none": make_tip(
            seeded, settings, grid=None, category="suspicious", description="可疑人员"
        ),
    }


VISIBLE = {
    "admin": {"g1", "g2", "none"},
    "city": {"g1", "g2", "none"},
    "town": {"g1", "g2", "none"},
    "elsewhere": {"none"},
    "g1": {"g1"},
    "g2": {"g2"},
}


def test_each_role_sees_exactly_its_scope(seeded, world):
    with seeded() as s:
        for username, expected in VISIBLE.items():
            staff = s.scalar(select(StaffUser).where(StaffUser.username == username))
            viewer = viewer_for(s, staff)
            listed = {r.tip.ref for r in queue_page(s, viewer).rows}
            assert listed == {world[k] for k in expected}, username
            assert sum(open_counts(s, viewer).values()) == len(expected), username
            for key, ref in world.items():
                if key in expected:
                    assert visible_tip(s, viewer, ref).ref == ref
                else:
                    with pytest.raises(TipNotFound):
                        visible_tip(s, viewer, ref)


def test_a_grid_worker_gets_404_for_another_grids_tip(app, client, seeded, world):
    ref = world["g1"]
    sign_in(client, "g2")
    with seeded() as s:
        photo_id = s.scalar(select(Photo.id))
        events_before = s.scalar(select(func.count()).select_from(TipEvent))
    token = page_csrf(client)
    reads = [
        f"/admin/tips/{ref}",
        f"/admin/photos/{photo_id}/derivative",
        f"/admin/photos/{photo_id}/thumbnail",
    ]
    for path in reads:
        response = client.get(path)
        assert response.status_code == 404, path
        # Only the address the user typed is echoed (the language switch returns to it).
        assert tip_row(seeded, ref).description not in response.get_data(as_text=True)
    writes = [
        (f"/admin/tips/{ref}/actions", {"action": "acknowledge"}),
        (f"/admin/tips/{ref}/actions", {"action": "reject", "outcome": "malicious"}),
        (f"/admin/tips/{ref}/notes", {"text": "looked"}),
        (f"/admin/tips/{ref}/messages", {"text": "hello"}),
    ]
    for path, data in writes:
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 404, path
    tip = tip_row(seeded, ref)
    assert tip.status == "new" and tip.acknowledged_at is None and tip.outcome is None
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(TipEvent)) == events_before
    # The listing, the counts and the live feed never mention it.
    queue = client.get("/admin/").get_data(as_text=True)
    assert ref not in queue and world["g2"] in queue
    feed = client.get("/admin/queue/updates.json?since=0").get_json()
    assert feed["new"] == 1 and ref not in str(feed)
    # A tip that does not exist looks the same as one out of scope.
    missing = client.get("/admin/tips/T-000000")
    assert missing.status_code == 404
    hidden = client.get(f"/admin/tips/{ref}").get_data(as_text=True)
    assert missing.get_data(as_text=True) == hidden.replace(ref, "T-000000")


def test_duplicate_of_and_assignee_must_be_in_scope(app, client, seeded, world):
    sign_in(client, "g2")
    token = page_csrf(client)
    ref = world["g2"]
    with seeded() as s:
        g1_worker = s.scalar(select(StaffUser.id).where(StaffUser.username == "g1"))
    # An original out of scope is "no such tip"; an assignee who cannot see the tip is refused.
    response = client.post(
        f"/admin/tips/{ref}/actions",
        data={"action": "mark_duplicate", "duplicate_of": world["g1"], "csrf_token": token},
    )
    assert response.status_code == 422
    response = client.post(
        f"/admin/tips/{ref}/actions",
        data={"action": "assign", "assignee": str(g1_worker), "csrf_token": token},
    )
    assert response.status_code == 422
    tip = tip_row(seeded, ref)
    assert tip.status == "new" and tip.duplicate_of_id is None and tip.assignee_id is None


@pytest.mark.parametrize(
    "extra",
    [
        {"status": "resolved"},
        {"grid_id": "1"},
        {"points": "1000"},
        {"reporter_id": "1"},
        {"is_open": "0"},
    ],
)
def test_mass_assignment_is_refused(app, client, seeded, world, extra):
    sign_in(client, "town")
    token = page_csrf(client)
    ref = world["g1"]
    before = tip_row(seeded, ref)
    response = client.post(
        f"/admin/tips/{ref}/actions",
        data={"action": "acknowledge", "csrf_token": token, **extra},
    )
    assert response.status_code == 422
    after = tip_row(seeded, ref)
    assert (after.status, after.grid_id, after.reporter_id, after.is_open) == (
        before.status,
        before.grid_id,
        before.reporter_id,
        before.is_open,
    )
    assert after.acknowledged_at is None
