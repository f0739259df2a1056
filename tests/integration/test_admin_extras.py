"""The admin's extra pages and their services: placing tips, grid layers and scopes, the map,
landmarks, entering a caller's tip, the dashboard and the export."""

from __future__ import annotations

import copy
import io
import json

import pytest
from sqlalchemy import func, select

from app import create_app
from app.errors import NotFound
from app.grids import services as grid_services
from app.grids.datum import wgs84_to_gcj02
from app.grids.services import route_point
from app.outbox.models import OutboxMessage
from app.people.models import AuditEntry, StaffScope, StaffUser
from app.reports.models import Landmark, Tip, TipEvent
from app.staff.grids_admin import assign_scope, unassign_scope, upload_layer
from app.staff.placement import OutsideArea, list_unplaced, place_tip
from app.staff.scope import viewer_for
from tests.extras import PASSWORD, add_staff, add_tip, csrf_of, sign_in
from tests.layers import centre_of, small_layer


@pytest.fixture
def staff(seeded):
    """An admin, a city and a town supervisor, and grid workers of G1 and G3 (all sign in)."""
    with seeded() as s:
        for name, role, grids in (
            ("admin", "admin", ()),
            ("city", "supervisor", ("C",)),
            ("town", "supervisor", ("T1",)),
            ("g1", "grid_worker", ("G1",)),
            ("g3", "grid_worker", ("G3",)),
        ):
            add_staff(s, name, role, grids, password=PASSWORD)
        s.commit()
    return seeded


def viewer(session, username):
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    return viewer_for(session, user)


def renamed_layer(prefix: str = "N") -> dict:
    """The small layer with its grids renamed, so routing shows which version answered."""
    layer = copy.deepcopy(small_layer())
    for f in layer["features"]:
        props = f["properties"]
        if props["level"] == "grid":
            props["code"] = prefix + props["code"][1:]
    return layer


# --- placing tips that need a location --------------------------------------------------------


def test_supervisor_places_a_tip_without_location(staff, settings):
    with staff() as s:
        tip = add_tip(s, settings, address="不知道是哪里的路口")
        s.commit()
        assert tip.grid_id is None and "needs_location" in tip.flags
        town, g1, g3 = viewer(s, "town"), viewer(s, "g1"), viewer(s, "g3")
        assert [t.ref for t in list_unplaced(s, town)] == [tip.ref]
        assert list_unplaced(s, g1) == []
        with pytest.raises(NotFound):
            place_tip(s, g1, tip.ref, lat=centre_of("G1")[0], lon=centre_of("G1")[1])
        with pytest.raises(OutsideArea):
            place_tip(s, town, tip.ref, lat=41.5, lon=123.5)
        s.rollback()

        lat, lon = centre_of("G3")
        placement = place_tip(s, town, tip.ref, lat=lat, lon=lon)
        s.commit()
        assert placement.code == "G3"
        s.refresh(tip)
        assert (tip.latitude, tip.longitude, tip.location_source) == (lat, lon, "map")
        assert tip.grid_path == "C/T1/V1/G3" and tip.routing_reason == "inside"
        assert "needs_location" not in tip.flags
        assert tip.ack_due_at is not None
        event = s.scalar(
            select(TipEvent).where(TipEvent.tip_id == tip.id, TipEvent.action == "placed")
        )
        assert (event.actor_kind, event.actor_id) == ("staff", town.staff_id)
        assert event.data["to"]["grid"] == "G3" and event.data["from"]["grid"] is None
        # G3's grid worker is told, and now sees it; nobody else's queue changed.
        told = s.scalars(
            select(OutboxMessage.recipient_id).where(
                OutboxMessage.tip_id == tip.id, OutboxMessage.dedupe_key.like("placed:%")
            )
        ).all()
        assert told == [g3.staff_id]
        assert list_unplaced(s, town) == []


# --- grid layers and scopes -------------------------------------------------------------------


def test_upload_layer_is_admin_only_and_audited(staff):
    data = json.dumps(renamed_layer()).encode()
    with staff() as s:
        with pytest.raises(NotFound):
            upload_layer(s, viewer(s, "city"), data, crs="wgs84", replace=True, source_name="x")
        result = upload_layer(
            s, viewer(s, "admin"), data, crs="wgs84", replace=True, source_name="new.geojson"
        )
        s.commit()
        assert (result.version, result.replaced_version, result.grid_count) == (2, 1, 4)
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "import_layer"))
        assert entry.target_id == result.layer_id and entry.data["version"] == 2
        lat, lon = centre_of("G1")
        assert route_point(s, lat, lon).code == "N1"  # this process follows at once


def test_scopes_are_assigned_by_admins_with_an_audit_trail(staff):
    with staff() as s:
        admin, g1 = viewer(s, "admin"), viewer(s, "g1")
        with pytest.raises(NotFound):
            assign_scope(s, viewer(s, "city"), staff_id=g1.staff_id, grid_code="G2")
        assert assign_scope(s, admin, staff_id=g1.staff_id, grid_code="G2") is True
        assert assign_scope(s, admin, staff_id=g1.staff_id, grid_code="G2") is False
        with pytest.raises(NotFound):  # admins have no scope to edit
            assign_scope(s, admin, staff_id=admin.staff_id, grid_code="G2")
        with pytest.raises(Exception) as exc:
            assign_scope(s, admin, staff_id=g1.staff_id, grid_code="NOPE")
        assert exc.value.code == "unknown_grid"
        s.commit()
        assert viewer(s, "g1").can_see("C/T1/V1/G2")
        assert unassign_scope(s, admin, staff_id=g1.staff_id, grid_code="G1") is True
        assert unassign_scope(s, admin, staff_id=g1.staff_id, grid_code="G1") is False
        s.commit()
        codes = s.scalars(select(StaffScope.grid_code).where(StaffScope.staff_id == g1.staff_id))
        assert list(codes) == ["G2"]
        actions = s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert actions == ["assign_scope", "unassign_scope"]


def _upload(client, token, layer, name, **fields):
    """POST a layer file to the grids page; a field (or token) given as None is left out."""
    data = {"csrf_token": token, "crs": "wgs84", "replace": "1", **fields}
    data = {key: value for key, value in data.items() if value is not None}
    data["file"] = (io.BytesIO(json.dumps(layer).encode()), name)
    return client.post("/admin/grids/upload", data=data, content_type="multipart/form-data")


def test_grids_page_upload_shows_problems_and_replaces(staff, client):
    token = sign_in(client, "admin")
    assert client.get("/admin/grids").status_code == 200
    broken = renamed_layer()
    broken["features"][4]["properties"]["parent"] = "MISSING"
    bad = _upload(client, token, broken, "broken.geojson")
    assert bad.status_code == 422 and "MISSING" in bad.text
    not_json = client.post(
        "/admin/grids/upload",
        data={"csrf_token": token, "file": (io.BytesIO(b"\x00nope"), "x.geojson")},
        content_type="multipart/form-data",
    )
    assert not_json.status_code == 422
    exists = _upload(client, token, renamed_layer(), "new.geojson", replace=None)
    assert exists.status_code == 409  # an active layer and no "replace"
    no_csrf = _upload(client, None, renamed_layer(), "new.geojson")
    assert no_csrf.status_code == 403
    done = _upload(client, token, renamed_layer(), "new.geojson")
    assert done.status_code == 200 and "new.geojson" in done.text


def test_grids_page_is_not_there_for_others(staff, client):
    token = sign_in(client, "city")
    assert client.get("/admin/grids").status_code == 404
    refused = client.post(
        "/admin/grids/scopes", data={"csrf_token": token, "staff_id": "1", "grid_code": "G2"}
    )
    assert refused.status_code == 404


def test_a_new_layer_reaches_another_worker_without_a_restart(staff, settings, app, client):
    """A second app (another worker's cache) routes by the new layer after the TTL or a clear."""
    other = create_app(settings)
    lat, lon = centre_of("G1")
    try:
        other_sessions = other.extensions["tipline"].sessions
        with other_sessions() as s:
            assert route_point(s, lat, lon).code == "G1"
        stale = dict(grid_services._active_layer._entries)  # what the other worker holds

        token = sign_in(client, "admin")
        done = _upload(client, token, renamed_layer(), "v2.geojson")
        assert done.status_code == 200
        with app.extensions["tipline"].sessions() as s:
            assert route_point(s, lat, lon).code == "N1"  # the uploading worker: at once

        # Another process still holds its entry until the TTL runs out...
        grid_services._active_layer._entries.update(stale)
        with other_sessions() as s:
            assert route_point(s, lat, lon).code == "G1"
        # ...then re-reads which layer is active (the entry is as old as the TTL).
        for key, (loaded_at, value) in list(grid_services._active_layer._entries.items()):
            grid_services._active_layer._entries[key] = (
                loaded_at - grid_services._active_layer._ttl,
                value,
            )
        with other_sessions() as s:
            assert route_point(s, lat, lon).code == "N1"
        # And a cache clear does the same at once.
        grid_services._active_layer._entries.update(stale)
        grid_services.clear_router_cache()
        with other_sessions() as s:
            assert route_point(s, lat, lon).code == "N1"
    finally:
        other.extensions["tipline"].engine.dispose()


# --- the map ----------------------------------------------------------------------------------


def test_map_shows_only_visible_tips_and_grids(staff, settings, client):
    with staff() as s:
        g1_tip = add_tip(s, settings, at=centre_of("G1"))
        g3_tip = add_tip(s, settings, at=centre_of("G3"), category="fire_hazard")
        s.commit()
        refs = {"G1": g1_tip.ref, "G3": g3_tip.ref}
        priorities = {g1_tip.priority, g3_tip.priority}
    sign_in(client, "g1")
    page = client.get("/admin/map")
    assert page.status_code == 200
    tips = client.get("/admin/map/tips.json").get_json()
    assert [f["properties"]["ref"] for f in tips["features"]] == [refs["G1"]]
    lat, lon = centre_of("G1")
    assert tips["features"][0]["geometry"]["coordinates"] == [round(lon, 6), round(lat, 6)]
    grids = client.get("/admin/map/grids.json").get_json()
    assert [f["properties"]["code"] for f in grids["features"]] == ["G1"]
    client.post("/admin/logout", data={"csrf_token": csrf_of(page.text)})

    sign_in(client, "town")
    for priority in priorities:  # whatever triage made of them
        only = client.get(f"/admin/map/tips.json?priority={priority}").get_json()
        assert {f["properties"]["priority"] for f in only["features"]} == {priority}
    fire = client.get("/admin/map/tips.json?category=fire_hazard").get_json()
    assert [f["properties"]["ref"] for f in fire["features"]] == [refs["G3"]]
    codes = [
        f["properties"]["code"] for f in client.get("/admin/map/grids.json").get_json()["features"]
    ]
    assert codes == ["G1", "G2", "G3", "G4"]
    assert client.get("/admin/map/tips.json?priority=nope").status_code == 422


def test_map_in_gcj02_tiles_converts_both_ways(staff, settings):
    gcj_app = create_app(
        settings.with_(map_tile_datum="gcj02", map_tile_url="https://tiles.example/{z}/{x}/{y}.png")
    )
    try:
        client = gcj_app.test_client()
        lat, lon = centre_of("G2")
        with staff() as s:
            tip = add_tip(s, settings, address="某处")
            located = add_tip(s, settings, at=(lat, lon))
            s.commit()
            ref, located_ref = tip.ref, located.ref
        token = sign_in(client, "town")
        page = client.get("/admin/map")
        assert 'data-datum="gcj02"' in page.text and ref in page.text
        assert "https://tiles.example" in page.headers["Content-Security-Policy"]
        shown = client.get("/admin/map/tips.json").get_json()["features"]
        gx, gy = wgs84_to_gcj02(lon, lat)
        point = next(f for f in shown if f["properties"]["ref"] == located_ref)
        assert point["geometry"]["coordinates"] == [round(gx, 6), round(gy, 6)]
        outline = client.get("/admin/map/grids.json").get_json()["features"][0]
        corner = outline["geometry"]["coordinates"][0][0]
        assert abs(corner[0] - 122.49) > 0.001  # shifted ~500 m into the tiles' datum

        # A pin dropped on the GCJ-02 map at the tip's shown place is stored as WGS-84.
        assert (
            client.post(
                f"/admin/map/place/{ref}", data={"latitude": gy, "longitude": gx}
            ).status_code
            == 403
        )
        placed = client.post(
            f"/admin/map/place/{ref}",
            data={"latitude": f"{gy:.7f}", "longitude": f"{gx:.7f}", "csrf_token": token},
        )
        assert placed.status_code == 303
        with staff() as s:
            tip = s.scalar(select(Tip).where(Tip.ref == ref))
            assert tip.latitude == pytest.approx(lat, abs=1e-6)
            assert tip.longitude == pytest.approx(lon, abs=1e-6)
            assert tip.grid_path == "C/T1/V1/G2"
    finally:
        gcj_app.extensions["tipline"].engine.dispose()


def test_grid_worker_cannot_place(staff, settings, client):
    with staff() as s:
        ref = add_tip(s, settings, at=centre_of("G1")).ref
        s.commit()
    token = sign_in(client, "g1")
    lat, lon = centre_of("G2")
    moved = client.post(
        f"/admin/map/place/{ref}", data={"latitude": lat, "longitude": lon, "csrf_token": token}
    )
    assert moved.status_code == 404
    with staff() as s:
        assert s.scalar(select(Tip.grid_path).where(Tip.ref == ref)) == "C/T1/V1/G1"


# --- landmarks page ---------------------------------------------------------------------------


def test_landmarks_page(staff, client):
    token = sign_in(client, "g1")
    lat, lon = centre_of("G1")
    form = {
        "grid_code": "G1",
        "name": "二中门口",
        "aliases": "第二中学\n市二中",
        "latitude": lat,
        "longitude": lon,
        "datum": "wgs84",
    }
    assert client.post("/admin/landmarks", data=form).status_code == 403
    created = client.post("/admin/landmarks", data={**form, "csrf_token": token})
    assert created.status_code == 303
    other = client.post("/admin/landmarks", data={**form, "grid_code": "G3", "csrf_token": token})
    assert other.status_code == 422 and "二中门口" in other.text  # the form comes back filled in
    page = client.get("/admin/landmarks?test=第二中学对面有人打架")
    assert page.status_code == 200 and "市二中" in page.text
    with staff() as s:
        landmark_id = s.scalar(select(Landmark.id))
    client.post("/admin/logout", data={"csrf_token": token})

    token = sign_in(client, "g3")
    assert "二中门口" not in client.get("/admin/landmarks").text
    assert (
        client.post(
            f"/admin/landmarks/{landmark_id}/delete", data={"csrf_token": token}
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/admin/landmarks/{landmark_id}", data={**form, "csrf_token": token}
        ).status_code
        == 404
    )
    with staff() as s:
        assert s.scalar(select(func.count()).select_from(Landmark)) == 1


# --- a caller's tip ---------------------------------------------------------------------------


def test_enter_a_tip_for_a_caller(staff, client):
    token = sign_in(client, "g3")
    page = client.get("/admin/intake")
    assert page.status_code == 200
    key = page.text.split('name="idempotency_key" value="')[1].split('"')[0]
    lat, lon = centre_of("G3")
    form = {
        "channel": "phone",
        "category": "theft",
        "description": "来电：电动车被盗",
        "latitude": lat,
        "longitude": lon,
        "datum": "wgs84",
        "occurred_at": "2026-11-20T08:30",
        "idempotency_key": key,
    }
    assert client.post("/admin/intake", data=form).status_code == 403
    done = client.post("/admin/intake", data={**form, "csrf_token": token})
    assert done.status_code == 200
    receipt = done.text.split('class="big receipt-code">')[1].split("<")[0]
    assert len(receipt.replace("-", "")) == 16
    again = client.post("/admin/intake", data={**form, "csrf_token": token})  # a double click
    assert receipt in again.text
    with staff() as s:
        tips = s.scalars(select(Tip)).all()
        assert len(tips) == 1
        tip = tips[0]
        assert (tip.channel, tip.reporter_id, tip.grid_path) == ("phone", None, "C/T1/V1/G3")
        assert tip.observed_at.isoformat() == "2026-11-20T00:30:00+00:00"
        event = s.scalar(select(TipEvent).where(TipEvent.tip_id == tip.id))
        g3 = viewer(s, "g3")
        assert (event.actor_kind, event.actor_id) == ("staff", g3.staff_id)
        assert event.data["entered_by"] == g3.staff_id and event.data["channel"] == "phone"

    bad = client.post("/admin/intake", data={**form, "channel": "fax", "csrf_token": token})
    assert bad.status_code == 422
    empty = client.post(
        "/admin/intake",
        data={"channel": "counter", "category": "theft", "csrf_token": token},
    )
    assert empty.status_code == 422  # no description and no photo


# --- dashboard and export ---------------------------------------------------------------------


def test_dashboard_and_export_are_scoped(staff, settings, client):
    with staff() as s:
        mine = add_tip(s, settings, at=centre_of("G1"), description="@cmd|' /C calc'!A0")
        theirs = add_tip(s, settings, at=centre_of("G3"))
        s.commit()
        refs = (mine.ref, theirs.ref)
    token = sign_in(client, "g1")
    for by in ("category", "grid", "town"):
        page = client.get(f"/admin/dashboard?by={by}")
        assert page.status_code == 200
    grid_page = client.get("/admin/dashboard?by=grid")
    assert "G1" in grid_page.text and "G3" not in grid_page.text
    assert client.get("/admin/dashboard?by=reporter").status_code == 422
    export = client.get("/admin/export.csv")
    assert export.status_code == 200
    assert export.headers["Content-Type"].startswith("text/csv")
    assert export.headers["Cache-Control"] == "no-store"
    body = export.data
    assert body.startswith(b"\xef\xbb\xbf")
    text = body.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("编号,")
    assert refs[0] in text and refs[1] not in text
    assert "'@cmd" in text
    english = client.get("/admin/export.csv?lang=en&grid=G3").data.decode("utf-8-sig")
    assert english.splitlines() == [english.splitlines()[0]]  # G3 is not theirs: no rows
    assert english.startswith("Reference,")
    assert token
