"""POST /api/v1/tips and GET /api/v1/tips/<ref> through the Flask app, on both databases."""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
from PIL import Image
from sqlalchemy import func, select

from app.reports.models import IdempotencyRecord, Photo, Tip, TipEvent
from tests.images import COMMENT, phone_jpeg, png_header_only
from tests.layers import centre_of

REF = re.compile(r"^T-[0-9A-HJKMNP-TV-Z]{6}$")


def count(session_factory, model) -> int:
    with session_factory() as s:
        return s.scalar(select(func.count()).select_from(model))


def stored_files(settings) -> list:
    """Every final (non-temp) file in the media store."""
    root = settings.media_dir
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and "tmp" not in p.relative_to(root).parts]


def post_json(client, body, key=None, token=None):
    headers = {}
    if key:
        headers["Idempotency-Key"] = key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post(
        "/api/v1/tips", data=json.dumps(body), headers=headers, content_type="application/json"
    )


def post_multipart(client, fields, photos, key=None):
    data = dict(fields)
    data["photos"] = [(io.BytesIO(b), name) for name, b in photos]
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/api/v1/tips", data=data, headers=headers, content_type="multipart/form-data"
    )


def tip_at(code="G1", **extra):
    lat, lon = centre_of(code)
    return {
        "category": "theft",
        "description": "自行车被偷 bike stolen",
        "latitude": lat,
        "longitude": lon,
        "accuracy_m": 15,
        **extra,
    }


# --- the happy paths -----------------------------------------------------------------------


def test_json_tip_is_stored_routed_and_acknowledged(client, seeded):
    resp = post_json(client, tip_at("G3"))
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert REF.match(body["ref"])
    assert body["status"] == "received"
    assert body["priority"] == "high"  # theft has severity 3
    assert body["grid"]["code"] == "G3"
    assert [p["code"] for p in body["grid"]["path"]] == ["C", "T1", "V1", "G3"]
    assert re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{4}", body["receipt"])  # no token: anonymous
    with seeded() as s:
        tip = s.scalar(select(Tip))
        assert tip.ref == body["ref"] and tip.routing_reason == "inside"
        assert tip.receipt_hash and body["receipt"] not in tip.receipt_hash
        assert s.scalar(select(TipEvent.action)) == "submitted"


def test_phone_photo_comes_back_upright_and_clean(client, seeded, settings):
    """The Done-when curl case: 12 MP, EXIF GPS, Orientation 6, COM comment."""
    jpeg = phone_jpeg(4032, 3024, orientation=6)
    resp = post_multipart(
        client, {"category": "suspicious", "description": "可疑车辆"}, [("IMG_0001.jpg", jpeg)]
    )
    assert resp.status_code == 201, resp.json
    body = resp.json
    # No coordinates were sent: the photo's GPS (the reference centre) placed it.
    assert "location_from_photo" in body["flags"]
    assert body["photos"] == [{"width": 1512, "height": 2016}]  # rotated: portrait
    with seeded() as s:
        photo = s.scalar(select(Photo))
    derivative = (settings.media_dir / photo.derivative_key).read_bytes()
    for needle in (b"Exif", COMMENT, b"ICC_PROFILE", b"CanaryPhoneMaker", b"http://ns.adobe"):
        assert needle not in derivative
    im = Image.open(io.BytesIO(derivative))
    assert im.size == (1512, 2016)
    assert not im.getexif()
    # Orientation 6 means "rotate 90° clockwise to view": the red corner ends top-right.
    px = im.convert("RGB")
    assert px.getpixel((im.width - 20, 20))[0] > 200
    assert px.getpixel((20, im.height - 20))[2] > 200


def test_stored_paths_come_from_content_not_filenames(client, seeded, settings):
    hostile = ["../../etc/passwd.jpg", "a\x00b.jpg", "evil\u202egpj.exe", "x" * 10_000]
    photos = [(name, phone_jpeg(400 + i, 300, gps=None)) for i, name in enumerate(hostile)]
    resp = post_multipart(client, {"category": "other", "description": "d"}, photos)
    assert resp.status_code == 201, resp.json
    names = [p.name for p in stored_files(settings)]
    assert len(names) == 8  # four derivatives and four thumbnails
    assert all(re.fullmatch(r"[0-9a-f]{64}\.jpg", n) for n in names)


# --- photos that must be refused (QUALITY.md 1, 2, 4, 8) -----------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (png_header_only(14000, 14000), "image_too_large"),
        (png_header_only(10000, 10000), "image_too_large"),
        (b"", "corrupt_image"),
        (phone_jpeg(400, 300)[:-400], "corrupt_image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "unsupported_format"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "unsupported_format"),
    ],
)
def test_bad_photo_is_refused_by_name_and_nothing_is_kept(client, seeded, settings, payload, code):
    good = phone_jpeg(100, 80, gps=None)
    resp = post_multipart(client, tip_at(), [("good.jpg", good), ("holiday.jpg", payload)])
    assert resp.status_code == 422
    assert resp.json["code"] == code
    assert "photo 2 (holiday.jpg)" in resp.json["message"]
    assert "1" in resp.json["errors"]["photos"]
    assert count(seeded, Tip) == 0
    assert stored_files(settings) == []


def test_too_many_photos_names_the_limit(client, seeded, settings):
    photo = phone_jpeg(32, 32, gps=None)
    resp = post_multipart(client, tip_at(), [(f"{i}.jpg", photo) for i in range(11)])
    assert resp.status_code == 413
    assert resp.json["code"] == "too_many_photos" and "10" in resp.json["message"]
    assert count(seeded, Tip) == 0


# --- idempotency (QUALITY.md 22) -----------------------------------------------------------


def test_same_key_replays_the_original_response(client, seeded):
    key = str(uuid.uuid4())
    first = post_json(client, tip_at(), key=key)
    again = post_json(client, tip_at(), key=key)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json  # receipt included, though it is stored only hashed
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(seeded, Tip) == 1


def test_same_key_with_another_payload_is_refused(client, seeded):
    key = str(uuid.uuid4())
    assert post_json(client, tip_at(), key=key).status_code == 201
    resp = post_json(client, tip_at(description="something else"), key=key)
    assert resp.status_code == 422 and resp.json["code"] == "idempotency_key_reused"
    assert count(seeded, Tip) == 1


def test_same_key_with_photos_replays_and_changed_photo_is_refused(client, seeded):
    key = str(uuid.uuid4())
    photo = phone_jpeg(120, 90, gps=None)
    first = post_multipart(client, tip_at(), [("a.jpg", photo)], key=key)
    again = post_multipart(client, tip_at(), [("renamed.jpg", photo)], key=key)
    assert first.status_code == again.status_code == 201 and again.json == first.json
    other = post_multipart(client, tip_at(), [("a.jpg", phone_jpeg(121, 90, gps=None))], key=key)
    assert other.status_code == 422
    assert count(seeded, Tip) == 1 and count(seeded, Photo) == 1


@pytest.mark.parametrize("key", ["not-a-uuid", "", "1234", "x" * 300])
def test_malformed_key_is_400(client, seeded, key):
    resp = post_json(client, tip_at(), key=key or " ")
    assert resp.status_code == 400 and resp.json["code"] == "bad_idempotency_key"
    assert count(seeded, Tip) == 0


def test_other_reporter_replaying_a_key_never_sees_the_first_tip(client, seeded):
    from app.people.services import create_reporter, issue_reporter_token

    with seeded() as s:
        a = issue_reporter_token(s, create_reporter(s, "volunteer").id)
        b = issue_reporter_token(s, create_reporter(s, "volunteer").id)
        s.commit()
    key = str(uuid.uuid4())
    ra = post_json(client, tip_at(), key=key, token=a)
    rb = post_json(client, tip_at(), key=key, token=b)
    assert ra.status_code == rb.status_code == 201
    assert ra.json["ref"] != rb.json["ref"]
    assert "receipt" not in ra.json  # signed in, not anonymous
    assert count(seeded, Tip) == 2
    assert (
        client.get(
            f"/api/v1/tips/{ra.json['ref']}", headers={"Authorization": f"Bearer {b}"}
        ).status_code
        == 404
    )


def test_idempotency_records_hold_no_receipt(client, seeded):
    key = str(uuid.uuid4())
    receipt = post_json(client, tip_at(), key=key).json["receipt"]
    with seeded() as s:
        record = s.scalar(select(IdempotencyRecord))
        assert receipt not in json.dumps(record.response)
        assert key not in record.key_hash


# --- malformed input (QUALITY.md 23, 26) ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"category": "theft", "latitude": 91, "longitude": 122}', "latitude"),
        ('{"category": "theft", "latitude": 40, "longitude": 181}', "longitude"),
        ('{"category": "theft", "latitude": 1e308, "longitude": 122}', "latitude"),
        ('{"category": "theft", "latitude": NaN, "longitude": 122}', "latitude"),
        ('{"category": "theft", "latitude": "north", "longitude": 122}', "latitude"),
        ('{"category": "theft", "latitude": true, "longitude": 122}', "latitude"),
        ('{"category": "theft", "latitude": 40.6}', "longitude"),
        ('{"category": "arson!", "description": "x"}', "category"),
        ('{"description": "x"}', "category"),
        ('{"category": "theft", "description": {"a": [1, 2]}}', "description"),
        ('{"category": "theft", "description": "x", "occurred_at": "yesterday"}', "occurred_at"),
        ('{"category": "theft", "description": "x", "grid_id": 1}', "grid_id"),
        ('{"category": "theft", "description": "x", "points": 100}', "points"),
        ('{"category": "theft", "description": "x", "status": "resolved"}', "status"),
        ('{"category": "theft", "description": "x", "reporter_id": 1}', "reporter_id"),
        ('{"category": "theft", "description": ""}', "description"),
        ('{"category": "theft", "description": "%s"}' % ("x" * 4097), "description"),
    ],
)
def test_bad_fields_get_field_errors_and_nothing_is_stored(client, seeded, raw, field):
    resp = client.post("/api/v1/tips", data=raw, content_type="application/json")
    assert resp.status_code == 422, resp.json
    assert resp.json["code"] == "validation_error"
    assert field in resp.json["errors"]
    assert count(seeded, Tip) == 0


@pytest.mark.parametrize("raw", ["{", "[1, 2]", '"text"', "[" * 100_000 + "]" * 100_000, "\xff"])
def test_unparseable_bodies_are_400(client, seeded, raw):
    resp = client.post("/api/v1/tips", data=raw, content_type="application/json")
    assert resp.status_code == 400 and resp.json["code"] == "bad_request"
    assert count(seeded, Tip) == 0


def test_other_media_types_are_415(client, seeded):
    resp = client.post("/api/v1/tips", data="category=theft", content_type="text/plain")
    assert resp.status_code == 415 and resp.json["code"] == "unsupported_media_type"


# --- odd but honest input is kept and flagged (QUALITY.md 24) ------------------------------


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        ({"latitude": 0, "longitude": 0}, "null_island"),
        ({"latitude": 39.9, "longitude": 116.4}, "outside_area"),
        ({"accuracy_m": 25_000}, "low_accuracy"),
    ],
)
def test_doubtful_locations_go_to_the_needs_location_queue(client, seeded, extra, flag):
    resp = post_json(client, {**tip_at(), **extra})
    assert resp.status_code == 201, resp.json
    assert resp.json["grid"] is None
    assert flag in resp.json["flags"] and "needs_location" in resp.json["flags"]
    with seeded() as s:
        tip = s.scalar(select(Tip))
        assert tip.grid_id is None and flag in tip.flags
        assert tip.latitude == pytest.approx(extra.get("latitude", tip.latitude))


def test_future_time_is_kept_and_flagged(client, seeded):
    resp = post_json(client, tip_at(occurred_at="2099-01-01T08:00:00+08:00"))
    assert resp.status_code == 201
    assert "future_time" in resp.json["flags"]
    assert resp.json["grid"]["code"] == "G1"  # the place is fine; staff check the time
    with seeded() as s:
        assert s.scalar(select(Tip.observed_at)).isoformat() == "2099-01-01T00:00:00+00:00"


def test_text_is_stored_exactly(client, seeded):
    text = "抢劫!! <script>alert(1)</script> *bold* _x_ [l](http://e) \u200b\u202e🚕" + "字" * 4000
    resp = post_json(client, tip_at(description=text))
    assert resp.status_code == 201
    with seeded() as s:
        assert s.scalar(select(Tip.description)) == text


# --- following a tip up ---------------------------------------------------------------------


def test_owner_and_receipt_holder_see_the_tip_others_get_404(client, seeded):
    from app.people.services import create_reporter, issue_reporter_token

    with seeded() as s:
        owner = issue_reporter_token(s, create_reporter(s, "taxi_driver").id)
        other = issue_reporter_token(s, create_reporter(s, "taxi_driver").id)
        s.commit()
    mine = post_json(client, tip_at(), token=owner).json["ref"]
    anon = post_json(client, tip_at()).json
    get = client.get
    assert (
        get(f"/api/v1/tips/{mine}", headers={"Authorization": f"Bearer {owner}"}).json["status"]
        == "received"
    )
    assert (
        get(
            f"/api/v1/tips/{mine.lower()}", headers={"Authorization": f"Bearer {owner}"}
        ).status_code
        == 200
    )
    assert (
        get(f"/api/v1/tips/{mine}", headers={"Authorization": f"Bearer {other}"}).status_code == 404
    )
    assert get(f"/api/v1/tips/{mine}").status_code == 404
    assert (
        get(f"/api/v1/tips/{anon['ref']}", headers={"X-Tip-Receipt": anon["receipt"]}).status_code
        == 200
    )
    wrong = get(f"/api/v1/tips/{anon['ref']}", headers={"X-Tip-Receipt": "1111-2222-3333-4444"})
    unknown = get("/api/v1/tips/T-000000", headers={"X-Tip-Receipt": anon["receipt"]})
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json == unknown.json  # a wrong receipt and an unknown ref look the same
    bad = get(f"/api/v1/tips/{mine}", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_grid_workers_of_the_grid_get_an_outbox_message(client, seeded):
    from app.outbox.models import OutboxMessage
    from app.people.services import create_staff_user

    with seeded() as s:
        worker = create_staff_user(s, "w1", "grid_worker", grids=["G2"]).id
        create_staff_user(s, "w2", "grid_worker", grids=["G3"])
        create_staff_user(s, "gone", "grid_worker", grids=["G2"]).active = False
        create_staff_user(s, "boss", "supervisor", grids=["G2"])
        s.commit()
    ref = post_json(client, tip_at("G2")).json["ref"]
    post_json(client, {**tip_at(), "latitude": 0, "longitude": 0})  # no grid: nobody
    with seeded() as s:
        rows = s.scalars(select(OutboxMessage)).all()
        tip_id = s.scalar(select(Tip.id).where(Tip.ref == ref))
    assert [(m.recipient_kind, m.recipient_id, m.template) for m in rows] == [
        ("staff", worker, "staff_new_tip")
    ]
    assert rows[0].params == {"ref": ref, "category": "theft", "priority": "high", "grid": "G2"}
    assert rows[0].dedupe_key == f"new_tip:{tip_id}:{worker}"
    assert rows[0].status == "pending" and rows[0].tip_id == tip_id


def test_a_typed_landmark_places_the_tip(client, seeded):
    from app.people.services import create_staff_user
    from app.staff.landmarks import create_landmark
    from app.staff.scope import viewer_for

    lat, lon = centre_of("G2")
    with seeded() as s:
        worker = create_staff_user(s, "lm", "grid_worker", grids=["G2"])
        create_landmark(
            s,
            viewer_for(s, worker),
            grid_code="G2",
            name="钢都小区3号楼",
            latitude=lat,
            longitude=lon,
            aliases=["钢都3号楼"],
        )
        s.commit()
    resp = post_json(
        client, {"category": "dispute", "description": "有人打架", "address": "钢都小区3号楼门口"}
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["grid"]["code"] == "G2"
    assert "location_from_landmark" in resp.json["flags"]
    unknown = post_json(
        client, {"category": "dispute", "description": "有人打架", "address": "不知道的地方"}
    )
    assert unknown.json["grid"] is None and "needs_location" in unknown.json["flags"]
