"""The staff API: bearer tokens, the admin's scope, photos, actions, no mass assignment."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from app.people.models import StaffToken, StaffUser
from app.people.services import create_reporter
from app.reports.models import Photo
from app.staff.sessions import set_staff_active
from tests.integration.test_admin_support import (
    link_telegram,
    make_staff,
    make_tip,
    staff_token,
    tip_row,
)


@pytest.fixture
def api(app, seeded, settings):
    """Tokens for a town supervisor and two grid workers; a G1 tip with a photo, a G2 tip."""
    make_staff(seeded, "town", "supervisor", ["T1"])
    make_staff(seeded, "g1", "grid_worker", ["G1"])
    make_staff(seeded, "g2", "grid_worker", ["G2"])
    with seeded() as s:
        reporter = create_reporter(s, "taxi_driver")
        link_telegram(s, reporter.id, "555123456")
        s.commit()
        pseudonym, reporter_id = reporter.pseudonym, reporter.id
    return {
        "town": {"Authorization": f"Bearer {staff_token(seeded, 'town')}"},
        "g1": {"Authorization": f"Bearer {staff_token(seeded, 'g1')}"},
        "g2": {"Authorization": f"Bearer {staff_token(seeded, 'g2')}"},
        "tip": make_tip(seeded, settings, grid="G1", photos=1, reporter_id=reporter_id),
        "other": make_tip(seeded, settings, grid="G2", category="theft", description="电瓶被盗"),
        "pseudonym": pseudonym,
    }


def test_tokens_are_required(client, api):
    assert client.get("/api/v1/staff/tips").status_code == 401
    assert (
        client.get("/api/v1/staff/tips", headers={"Authorization": "Bearer tps_nope"}).status_code
        == 401
    )
    assert (
        client.get("/api/v1/staff/tips", headers={"Authorization": "Basic abc"}).status_code == 401
    )
    body = client.get("/api/v1/staff/tips").get_json()
    assert body["code"] == "unauthorised"


def test_list_is_scoped_and_paged(client, api, seeded, settings):
    town = client.get("/api/v1/staff/tips", headers=api["town"]).get_json()
    assert {t["ref"] for t in town["tips"]} == {api["tip"], api["other"]}
    assert town["tips"][0]["ref"] == api["tip"]  # urgent first
    g2 = client.get("/api/v1/staff/tips", headers=api["g2"]).get_json()
    assert [t["ref"] for t in g2["tips"]] == [api["other"]]
    first = client.get("/api/v1/staff/tips?limit=1", headers=api["town"]).get_json()
    assert len(first["tips"]) == 1 and first["next"]
    rest = client.get(
        f"/api/v1/staff/tips?limit=1&after={first['next']}", headers=api["town"]
    ).get_json()
    assert [t["ref"] for t in rest["tips"]] == [api["other"]] and rest["next"] is None
    filtered = client.get(
        "/api/v1/staff/tips?grid=G2&priority=urgent", headers=api["town"]
    ).get_json()
    assert filtered["tips"] == []
    assert client.get("/api/v1/staff/tips?bogus=1", headers=api["town"]).status_code == 422
    assert client.get("/api/v1/staff/tips?status=nope", headers=api["town"]).status_code == 422
    assert client.get("/api/v1/staff/tips?after=zz", headers=api["town"]).status_code == 400


def test_tip_detail_shows_pseudonym_and_photo_urls(client, api):
    response = client.get(f"/api/v1/staff/tips/{api['tip']}", headers=api["g1"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    tip = response.get_json()
    assert tip["ref"] == api["tip"] and tip["status"] == "new" and tip["outcome"] is None
    assert tip["priority"] == "urgent" and tip["category"] == "robbery_violence"
    assert tip["grid"]["code"] == "G1" and [p["code"] for p in tip["grid"]["path"]] == [
        "C",
        "T1",
        "V1",
        "G1",
    ]
    assert tip["reporter"] == {"pseudonym": api["pseudonym"]}
    assert "555123456" not in response.get_data(as_text=True)
    (photo,) = tip["photos"]
    assert photo["width"] > 0 and photo["height"] > 0
    for url in (photo["url"], photo["thumbnail_url"]):
        image = client.get(url, headers=api["g1"])
        assert image.status_code == 200 and image.mimetype == "image/jpeg"
        assert image.headers["X-Content-Type-Options"] == "nosniff"
        assert client.get(url, headers=api["g2"]).status_code == 404
        assert client.get(url).status_code == 401


def test_out_of_scope_is_404_and_unchanged(client, api, seeded):
    ref = api["tip"]
    assert client.get(f"/api/v1/staff/tips/{ref}", headers=api["g2"]).status_code == 404
    response = client.post(
        f"/api/v1/staff/tips/{ref}/actions", json={"action": "acknowledge"}, headers=api["g2"]
    )
    assert response.status_code == 404
    assert tip_row(seeded, ref).status == "new"
    with seeded() as s:
        photo_id = s.scalar(select(Photo.id))
    assert (
        client.get(f"/api/v1/staff/photos/{photo_id}/derivative", headers=api["g2"]).status_code
        == 404
    )


def test_actions(client, api, seeded):
    ref = api["tip"]
    url = f"/api/v1/staff/tips/{ref}/actions"
    response = client.post(url, json={"action": "acknowledge"}, headers=api["town"])
    assert response.status_code == 200 and response.get_json()["status"] == "acknowledged"
    assigned = client.post(url, json={"action": "assign", "assignee": "g1"}, headers=api["town"])
    assert assigned.get_json()["assignee"] == "g1"
    refused = client.post(url, json={"action": "assign", "assignee": "g2"}, headers=api["town"])
    assert refused.status_code == 422 and "assignee" in refused.get_json()["errors"]
    assert client.post(url, json={"action": "resolve"}, headers=api["g1"]).status_code == 422
    done = client.post(
        url,
        json={"action": "resolve", "outcome": "confirmed", "note": "处置完毕"},
        headers=api["g1"],
    )
    assert done.status_code == 200
    assert (done.get_json()["status"], done.get_json()["outcome"]) == ("resolved", "confirmed")
    again = client.post(url, json={"action": "acknowledge"}, headers=api["g1"])
    assert again.status_code == 409 and again.get_json()["code"] == "invalid_transition"
    dup = client.post(
        f"/api/v1/staff/tips/{api['other']}/actions",
        json={"action": "mark_duplicate", "duplicate_of": ref},
        headers=api["town"],
    )
    assert dup.status_code == 200 and dup.get_json()["duplicate_of"] == ref


@pytest.mark.parametrize(
    "extra",
    [
        {"status": "resolved"},
        {"grid_id": 3},
        {"points": 100},
        {"reporter_id": 1},
        {"outcome_by": 1},
    ],
)
def test_mass_assignment_is_refused(client, api, seeded, extra):
    ref = api["tip"]
    response = client.post(
        f"/api/v1/staff/tips/{ref}/actions",
        json={"action": "acknowledge", **extra},
        headers=api["town"],
    )
    assert response.status_code == 422
    assert set(extra) <= set(response.get_json()["errors"])
    tip = tip_row(seeded, ref)
    assert tip.status == "new" and tip.acknowledged_at is None and tip.grid_path.endswith("G1")


def test_disabled_users_and_revoked_tokens_are_refused(client, api, seeded):
    with seeded() as s:
        g1 = s.scalar(select(StaffUser.id).where(StaffUser.username == "g1"))
        set_staff_active(s, g1, False)
        town = s.scalar(select(StaffUser.id).where(StaffUser.username == "town"))
        s.execute(
            update(StaffToken)
            .where(StaffToken.staff_id == town)
            .values(revoked_at=StaffToken.created_at)
        )
        s.commit()
    assert client.get("/api/v1/staff/tips", headers=api["g1"]).status_code == 401
    assert client.get("/api/v1/staff/tips", headers=api["town"]).status_code == 401
    assert client.get("/api/v1/staff/tips", headers=api["g2"]).status_code == 200


def test_openapi_documents_the_staff_api(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/staff/tips" in spec["paths"]
    assert "/api/v1/staff/tips/{ref}/actions" in spec["paths"]
    assert "staffToken" in spec["components"]["securitySchemes"]
