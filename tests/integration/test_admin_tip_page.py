"""The tip page: text shown safely, photos behind the scope check, the map, triage, actions."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select, update

from app.grids.datum import wgs84_to_gcj02
from app.outbox.models import OutboxMessage
from app.people.models import StaffUser
from app.people.services import create_reporter
from app.reports.models import Photo, Tip, TipEvent
from tests.integration.test_admin_support import (
    make_staff,
    make_tip,
    page_csrf,
    sign_in,
    tip_row,
)
from tests.layers import centre_of


@pytest.fixture
def town(app, client, seeded):
    """A town supervisor, signed in; a grid worker of G1 to assign to."""
    make_staff(seeded, "town", "supervisor", ["T1"])
    make_staff(seeded, "g1", "grid_worker", ["G1"])
    sign_in(client, "town")
    return client


def _map_data(html: str) -> dict:
    raw = re.search(r"data-map='([^']*)'", html).group(1)
    return json.loads(raw.replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&"))


def test_description_is_shown_as_text(seeded, settings, town):
    hostile = (
        "<script>alert(1)</script> **bold** [link](javascript:alert(2)) "
        "abc\u200bdef \u202egpj.exe\u202c <img src=x onerror=alert(3)>"
    )
    ref = make_tip(seeded, settings, category="suspicious", description=hostile)
    html = town.get(f"/admin/tips/{ref}").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "**bold** [link](javascript:alert(2))" in html  # Markdown is not rendered either
    assert "\u202e" not in html and "\u200b" not in html  # the controls do not act...
    assert 'title="U+202E">U+202E</span>' in html  # ...they are shown
    assert 'title="U+200B">U+200B</span>' in html
    queue = town.get("/admin/").get_data(as_text=True)
    assert "<script>alert(1)" not in queue and "\u202e" not in queue
    assert tip_row(seeded, ref).description == hostile  # stored exactly


def test_photos_are_served_after_the_scope_check_as_jpeg(seeded, settings, town):
    ref = make_tip(seeded, settings, photos=2)
    html = town.get(f"/admin/tips/{ref}").get_data(as_text=True)
    with seeded() as s:
        photos = s.scalars(select(Photo).order_by(Photo.position)).all()
    for photo in photos:
        assert f"/admin/photos/{photo.id}/thumbnail" in html
        for kind in ("thumbnail", "derivative"):
            response = town.get(f"/admin/photos/{photo.id}/{kind}")
            assert response.status_code == 200
            assert response.mimetype == "image/jpeg"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Cache-Control"] == "no-store"
            assert response.data[:2] == b"\xff\xd8"
            assert b"CanaryPhoneMaker" not in response.data  # the cleaned derivative only
    assert town.get(f"/admin/photos/{photos[0].id}/original").status_code == 404
    assert town.get("/admin/photos/999999/thumbnail").status_code == 404


def test_map_shows_the_grid_outline_and_point(seeded, settings, town, client):
    ref = make_tip(seeded, settings, grid="G3")
    html = town.get(f"/admin/tips/{ref}").get_data(as_text=True)
    data = _map_data(html)
    lat, lon = centre_of("G3")
    assert data["datum"] == "wgs84"
    assert data["point"]["lat"] == pytest.approx(lat) and data["point"]["lon"] == pytest.approx(lon)
    ring = data["grid"]["coordinates"][0]
    assert min(x for x, _ in ring) <= lon <= max(x for x, _ in ring)
    assert 'data-tiles=""' in html  # no tiles by default: nothing is fetched from outside
    assert "/static/vendor/leaflet/leaflet.js" in html
    assert "/admin/static/tip.js" in html
    for asset in ("/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css"):
        response = client.get(asset)
        assert response.status_code == 200
        response.close()
    assert "测试区 (T1)" in html and "网格3 (G3)" in html
    assert "位于网格内" in html  # the routing reason


def test_map_follows_the_tiles_datum(app, seeded, settings, engine):
    from app import create_app

    make_staff(seeded, "town", "supervisor", ["T1"])
    ref = make_tip(seeded, settings, grid="G3")
    gcj_app = create_app(
        settings.with_(
            map_tile_url="https://tiles.example.cn/{z}/{x}/{y}.png", map_tile_datum="gcj02"
        )
    )
    try:
        client = gcj_app.test_client()
        sign_in(client, "town")
        html = client.get(f"/admin/tips/{ref}").get_data(as_text=True)
    finally:
        gcj_app.extensions["tipline"].engine.dispose()
    data = _map_data(html)
    lat, lon = centre_of("G3")
    glon, glat = wgs84_to_gcj02(lon, lat)
    assert data["datum"] == "gcj02"
    assert data["point"]["lon"] == pytest.approx(glon) and data["point"]["lat"] == pytest.approx(
        glat
    )
    assert abs(glon - lon) > 0.001  # the shift is real (hundreds of metres here)
    corner = data["grid"]["coordinates"][0][0]
    assert corner != pytest.approx([122.49, 40.64]) and corner != pytest.approx([122.49, 40.63])
    assert 'data-tiles="https://tiles.example.cn/{z}/{x}/{y}.png"' in html


def test_neighbours_and_priority_reasons(seeded, settings, town):
    ref = make_tip(seeded, settings, description="有人持刀 knife")
    with seeded() as s:
        s.execute(update(Tip).where(Tip.ref == ref).values(neighbour_grids=["G2"]))
        s.commit()
    html = town.get(f"/admin/tips/{ref}").get_data(as_text=True)
    assert "网格2 (G2)" in html
    reasons = re.search(r'<ul class="reasons">(.*?)</ul>', html, re.S).group(1)
    assert "knife" in reasons or "持刀" in reasons
    assert len(_map_data(html)["neighbours"]) == 1


def test_acknowledge_assign_start_resolve(seeded, settings, town):
    ref = make_tip(seeded, settings)
    with seeded() as s:
        g1 = s.scalar(select(StaffUser.id).where(StaffUser.username == "g1"))
    html = town.get(f"/admin/tips/{ref}").get_data(as_text=True)
    assert f'<option value="{g1}">g1' in html  # the grid worker of G1 is assignable
    token = page_csrf(town, f"/admin/tips/{ref}")
    url = f"/admin/tips/{ref}/actions"
    response = town.post(url, data={"csrf_token": token, "action": "acknowledge"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/admin/tips/{ref}?done=acknowledge")
    assert tip_row(seeded, ref).status == "acknowledged"
    town.post(url, data={"csrf_token": token, "action": "assign", "assignee": str(g1)})
    tip = tip_row(seeded, ref)
    assert (tip.status, tip.assignee_id) == ("assigned", g1)
    town.post(url, data={"csrf_token": token, "action": "start"})
    # Resolving needs an outcome: refused, and nothing changes.
    refused = town.post(url, data={"csrf_token": token, "action": "resolve"})
    assert refused.status_code == 422
    assert "outcome" in refused.get_data(as_text=True)
    assert tip_row(seeded, ref).status == "in_progress"
    town.post(
        url, data={"csrf_token": token, "action": "resolve", "outcome": "confirmed", "note": "抓获"}
    )
    tip = tip_row(seeded, ref)
    assert (tip.status, tip.outcome, tip.is_open) == ("resolved", "confirmed", False)
    # A transition that does not apply is a 409 and changes nothing.
    conflict = town.post(url, data={"csrf_token": token, "action": "acknowledge"})
    assert conflict.status_code == 409
    assert tip_row(seeded, ref).status == "resolved"
    page = town.get(f"/admin/tips/{ref}").get_data(as_text=True)
    trail = re.search(r'<ol class="trail-list">(.*?)</ol>', page, re.S).group(1)
    for word in ("签收", "指派", "开始处理", "办结", "抓获", "g1"):
        assert word in trail
    assert "town" in trail


def test_notes_and_messages(seeded, settings, town):
    with seeded() as s:
        reporter = create_reporter(s, "volunteer")
        s.commit()
        reporter_id = reporter.id
    ref = make_tip(seeded, settings, reporter_id=reporter_id)
    anonymous = make_tip(seeded, settings, category="theft", description="电动车被盗")
    token = page_csrf(town, f"/admin/tips/{ref}")
    assert (
        town.post(
            f"/admin/tips/{ref}/notes", data={"csrf_token": token, "text": "内部：已联系派出所"}
        ).status_code
        == 303
    )
    assert (
        town.post(
            f"/admin/tips/{ref}/messages", data={"csrf_token": token, "text": "谢谢，已派人"}
        ).status_code
        == 303
    )
    page = town.get(f"/admin/tips/{ref}").get_data(as_text=True)
    assert "内部：已联系派出所" in page and "谢谢，已派人" in page
    with seeded() as s:
        rows = s.scalars(
            select(OutboxMessage).where(OutboxMessage.recipient_kind == "reporter")
        ).all()
        assert [r.params.get("text") for r in rows if r.template == "message_to_reporter"] == [
            "谢谢，已派人"
        ]
        assert not any("内部" in json.dumps(r.params, ensure_ascii=False) for r in rows)
    refused = town.post(
        f"/admin/tips/{anonymous}/messages", data={"csrf_token": token, "text": "hi"}
    )
    assert refused.status_code == 422
    assert (
        town.post(f"/admin/tips/{ref}/notes", data={"csrf_token": token, "text": ""}).status_code
        == 422
    )


def test_duplicate_candidates_merge_and_split(seeded, settings, town):
    first = make_tip(seeded, settings, category="fire_hazard", description="仓库冒烟")
    second = make_tip(seeded, settings, category="fire_hazard", description="看到仓库着火")
    page = town.get(f"/admin/tips/{first}").get_data(as_text=True)
    candidates = re.search(r'<ul class="candidates">(.*?)</ul>', page, re.S).group(1)
    assert second in candidates
    token = page_csrf(town, f"/admin/tips/{first}")
    response = town.post(f"/admin/tips/{first}/merge", data={"csrf_token": token, "other": second})
    assert response.status_code == 303
    merged = tip_row(seeded, second)
    assert merged.status == "duplicate" and merged.duplicate_of_id == tip_row(seeded, first).id
    response = town.post(f"/admin/tips/{first}/split", data={"csrf_token": token, "other": second})
    assert response.status_code == 303
    split = tip_row(seeded, second)
    assert split.duplicate_of_id is None and split.status == "acknowledged"
    assert split.incident_id != tip_row(seeded, first).incident_id
    with seeded() as s:
        actions = set(s.scalars(select(TipEvent.action).where(TipEvent.tip_id == split.id)))
    assert {"merged", "mark_duplicate", "split", "reopen"} <= actions
    # Merging a tip into itself is refused without a change.
    refused = town.post(f"/admin/tips/{first}/merge", data={"csrf_token": token, "other": first})
    assert refused.status_code in (409, 422)


def test_english_tip_page(seeded, settings, town):
    ref = make_tip(seeded, settings)
    token = page_csrf(town)
    town.post(
        "/admin/locale", data={"csrf_token": token, "locale": "en", "next": f"/admin/tips/{ref}"}
    )
    html = town.get(f"/admin/tips/{ref}").get_data(as_text=True)
    assert "Acknowledge" in html and "Audit trail" in html and "Robbery or violence" in html
