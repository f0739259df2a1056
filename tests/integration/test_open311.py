"""Open311 GeoReport v2 through the Flask app, walked with the spec's own examples, both DBs."""

from __future__ import annotations

import datetime as dt
import io
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.partners.keys import create_partner, revoke_partner
from app.partners.models import Partner, PartnerRequest
from app.people.models import Reporter, ReporterIdentity
from app.people.services import create_staff_user
from app.reports.models import PRIORITIES, Photo, Tip
from app.reports.workflow import apply_action
from app.rewards.models import PointEntry
from tests.images import phone_jpeg
from tests.layers import centre_of

V2 = "/open311/v2"
# The reporter fields of the spec's POST example, made unmistakable for the byte checks.
PERSON = {
    "email": "smit222@sfgov.edu",
    "device_id": "tt222111-canary",
    "account_id": "acct-123456-canary",
    "first_name": "Johncanary",
    "last_name": "Smithcanary",
    "phone": "111111111",
}


def make_partner(factory, settings, name="Alarm Co", org="Alarm Co Ltd", grid_paths=None):
    with factory() as s:
        partner, key = create_partner(
            s, settings, name=name, organisation=org, grid_paths=grid_paths
        )
        s.commit()
        return partner.id, key


@pytest.fixture
def partner(seeded, settings):
    return make_partner(seeded, settings)


@pytest.fixture
def key(partner):
    return partner[1]


def spec_post(code="G1", **extra):
    """The spec's POST example, moved into the test city and its categories."""
    lat, lon = centre_of(code)
    return {
        "service_code": "theft",
        "lat": str(lat),
        "long": str(lon),
        "address_string": "1234 5th street",
        "description": "A bicycle was stolen from the rack 自行车被偷",
        "media_url": "http://farm3.static.flickr.com/2002/2212426634_5ed477a060.jpg",
        "attribute[stolen_item]": "bicycle",
        "attribute[loss_estimate]": "800",
        **PERSON,
        **extra,
    }


def post(client, key, data, fmt="json", headers=None, **kw):
    body = dict(data)
    if key is not None:
        body["api_key"] = key
    return client.post(f"{V2}/requests.{fmt}", data=body, headers=headers or {}, **kw)


def xml(resp) -> ET.Element:
    assert resp.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert resp.data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    return ET.fromstring(resp.data)  # noqa: S314 (our own output; the issue asks for this parser)


def count(factory, model) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model))


# --- discovery and services --------------------------------------------------------------


def test_discovery_in_json_and_xml(client, key):
    body = client.get(f"{V2}/discovery.json", query_string={"api_key": key}).json
    assert body["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert body["endpoints"][0]["url"].endswith("/open311/v2")
    assert "text/xml" in body["endpoints"][0]["formats"]
    root = xml(client.get(f"{V2}/discovery.xml", headers={"X-Api-Key": key}))
    assert root.tag == "discovery"
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == [
        "application/json",
        "text/xml",
    ]
    assert root.findtext("changeset").endswith("+08:00")


def test_service_list_in_json_and_xml(client, key):
    services = client.get(f"{V2}/services.json", query_string={"api_key": key}).json
    assert isinstance(services, list) and len(services) == 11
    theft = next(s for s in services if s["service_code"] == "theft")
    assert set(theft) == {
        "service_code",
        "service_name",
        "description",
        "metadata",
        "type",
        "keywords",
        "group",
    }
    assert theft["service_name"] == "盗窃" and theft["metadata"] is True
    assert theft["type"] == "realtime"
    other = next(s for s in services if s["service_code"] == "other")
    assert other["metadata"] is False
    english = client.get(
        f"{V2}/services.json", query_string={"api_key": key}, headers={"Accept-Language": "en-US"}
    ).json
    assert next(s for s in english if s["service_code"] == "theft")["service_name"] == "Theft"
    root = xml(client.get(f"{V2}/services.xml", query_string={"api_key": key, "locale": "en"}))
    assert root.tag == "services"
    codes = [s.findtext("service_code") for s in root.findall("service")]
    assert len(codes) == 11 and "theft" in codes
    assert root.find("service/metadata").text in ("true", "false")


def test_service_definition_in_json_and_xml(client, key):
    body = client.get(f"{V2}/services/theft.json", query_string={"api_key": key}).json
    assert body["service_code"] == "theft"
    first = body["attributes"][0]
    assert first["code"] == "stolen_item" and first["datatype"] == "singlevaluelist"
    assert first["variable"] is True and first["required"] is True and first["order"] == 1
    assert {"key": "bicycle", "name": "自行车"} in first["values"]
    root = xml(client.get(f"{V2}/services/fire_hazard.xml", query_string={"api_key": key}))
    assert root.tag == "service_definition"
    attr = root.find("attributes/attribute")
    assert attr.findtext("datatype") == "multivaluelist"
    assert "smoke" in [v.findtext("key") for v in attr.findall("values/value")]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_service_is_404_in_the_envelope(client, key, fmt):
    resp = client.get(f"{V2}/services/potholes.{fmt}", query_string={"api_key": key})
    assert resp.status_code == 404
    if fmt == "json":
        assert resp.json[0]["code"] == 404 and resp.json[0]["description"]
    else:
        root = xml(resp)
        assert root.tag == "errors" and root.findtext("error/code") == "404"


# --- POST a request ------------------------------------------------------------------------


def test_post_spec_example_in_json_makes_a_routed_triaged_open311_tip(client, key, seeded):
    resp = post(client, key, spec_post("G3"))
    assert resp.status_code == 201, resp.data
    [answer] = resp.json
    assert set(answer) == {"service_request_id", "service_notice", "account_id", "token"}
    assert answer["account_id"] is None
    with seeded() as s:
        tip = s.scalar(select(Tip).where(Tip.ref == answer["service_request_id"]))
        assert tip.channel == "open311"
        assert tip.grid_path == "C/T1/V1/G3"
        assert tip.priority in PRIORITIES and tip.priority_reasons  # triaged like any tip
        assert tip.address == "1234 5th street"
        req = s.scalar(select(PartnerRequest).where(PartnerRequest.tip_id == tip.id))
        assert req.token == answer["token"]
        assert req.attributes == {"stolen_item": "bicycle", "loss_estimate": 800.0}
        reporter = s.get(Reporter, tip.reporter_id)
        assert reporter.role == "enterprise_guard"
        partner = s.scalar(select(Partner))
        assert reporter.organisation_id == partner.organisation_id
        assert reporter.id != partner.reporter_id  # the named person, not the key's own
        identities = s.scalars(
            select(ReporterIdentity).where(ReporterIdentity.channel == "open311")
        )
        kinds = sorted(i.external_address.split(":")[0] for i in identities)
        assert kinds == ["account_id", "device_id", "email", "name", "phone"]


def test_a_long_email_is_kept_whole_for_the_audited_reveal(client, key, seeded):
    email = "a" * 240 + "@example.org"  # 252 characters: within RFC 5321's 254
    assert post(client, key, spec_post(email=email)).status_code == 201
    with seeded() as s:
        kept = s.scalars(
            select(ReporterIdentity.external_address).where(ReporterIdentity.channel == "open311")
        ).all()
    assert f"email:{email}" in kept


def test_post_spec_example_in_xml(client, key):
    resp = post(client, key, spec_post(), fmt="xml")
    assert resp.status_code == 201
    root = xml(resp)
    assert root.tag == "service_requests"
    assert root.findtext("request/service_request_id").startswith("T-")
    assert root.find("request/account_id").text is None  # <account_id /> as in the spec
    assert root.findtext("request/token")


def test_same_person_is_one_reporter_and_no_person_is_the_partner(client, key, seeded):
    first = post(client, key, spec_post()).json[0]["service_request_id"]
    again = post(client, key, spec_post(email="SMIT222@sfgov.edu ", device_id="")).json[0]
    anonymous = {k: v for k, v in spec_post().items() if k not in PERSON}
    plain = post(client, key, anonymous).json[0]["service_request_id"]
    with seeded() as s:
        owner = {t.ref: t.reporter_id for t in s.scalars(select(Tip))}
        partner = s.scalar(select(Partner))
    assert owner[first] == owner[again["service_request_id"]]
    assert owner[plain] == partner.reporter_id


def test_resolved_confirmed_earns_points_for_the_named_person(client, key, seeded):
    ref = post(client, key, spec_post()).json[0]["service_request_id"]
    with seeded() as s:
        staff = create_staff_user(s, "sup", "supervisor", grids=["C"])
        tip = s.scalar(select(Tip).where(Tip.ref == ref))
        apply_action(s, tip.id, actor_id=staff.id, action="acknowledge")
        apply_action(s, tip.id, actor_id=staff.id, action="resolve", outcome="confirmed")
        s.commit()
        entries = s.scalars(select(PointEntry).where(PointEntry.tip_id == tip.id)).all()
        assert entries and sum(e.points for e in entries) > 0
        assert {e.reporter_id for e in entries} == {tip.reporter_id}
        assert {e.organisation_id for e in entries} == {
            s.get(Reporter, tip.reporter_id).organisation_id
        }
    shown = client.get(f"{V2}/requests/{ref}.json", query_string={"api_key": key}).json[0]
    assert shown["status"] == "closed" and shown["status_notes"] == "已办结"
    assert shown["expected_datetime"] is None


def test_multipart_media_goes_through_the_photo_pipeline(client, key, seeded):
    data = spec_post()
    data["media"] = (io.BytesIO(phone_jpeg()), "photo.jpg")
    resp = post(client, key, data, content_type="multipart/form-data")
    assert resp.status_code == 201, resp.data
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Photo)) == 1
    shown = client.get(f"{V2}/requests.json", query_string={"api_key": key}).json[0]
    assert "media_url" not in shown  # photos are not public


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service_code": ""}, "service_code"),
        ({"service_code": "potholes"}, "service_code"),
        ({"lat": "91"}, "lat"),
        ({"long": "not-a-number"}, "long"),
        ({"lat": "", "long": "", "address_string": ""}, "lat"),
        ({"attribute[stolen_item]": "spaceship"}, "attribute[stolen_item]"),
        ({"attribute[stolen_item]": ""}, "attribute[stolen_item]"),
        ({"attribute[loss_estimate]": "NaN"}, "attribute[loss_estimate]"),
        ({"attribute[colour_of_hair]": "red"}, "attribute[colour_of_hair]"),
        ({"email": "x" * 300 + "@example.com"}, "email"),
    ],
)
def test_bad_posts_are_400_per_field_and_store_nothing(client, key, seeded, change, field):
    for fmt in ("json", "xml"):
        resp = post(client, key, spec_post(**change), fmt=fmt)
        assert resp.status_code == 400, resp.data
        if fmt == "json":
            descriptions = [e["description"] for e in resp.json]
            assert all(e["code"] == 400 for e in resp.json)
        else:
            descriptions = [e.findtext("description") for e in xml(resp).findall("error")]
        assert any(d.startswith(f"{field}:") for d in descriptions), descriptions
    assert count(seeded, Tip) == 0
    assert count(seeded, ReporterIdentity) == 0


def test_address_only_is_accepted_without_coordinates(client, key, seeded):
    data = {k: v for k, v in spec_post().items() if k not in ("lat", "long")}
    resp = post(client, key, data)
    assert resp.status_code == 201
    shown = client.get(
        f"{V2}/requests/{resp.json[0]['service_request_id']}.json", query_string={"api_key": key}
    ).json[0]
    assert shown["lat"] is None and shown["address"] == "1234 5th street"
    assert shown["agency_responsible"] == "待定位（市级值班）"


def test_json_body_is_refused_as_the_spec_wants_a_form(client, key):
    resp = client.post(f"{V2}/requests.json?api_key={key}", json=spec_post())
    assert resp.status_code == 400
    assert resp.json[0]["code"] == 400


@pytest.fixture
def route_calls(monkeypatch):
    """Count calls of the real route_point, wherever the app imported it (no canned answer)."""
    from app.grids import services as grids

    real, calls = grids.route_point, []

    def counting(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "app" and getattr(module, "route_point", None) is real:
            monkeypatch.setattr(module, "route_point", counting)
    return calls


def stored_files(settings) -> list[Path]:
    """Every file under the media folder, temp files included."""
    return [p for p in settings.media_dir.rglob("*") if p.is_file()]


def test_partner_grids_refuse_outside_before_storing(client, seeded, settings, route_calls):
    _pid, key = make_partner(seeded, settings, "Mall", "Mall", grid_paths=["C/T1/V1/G1"])
    data = spec_post("G4", locale="en")
    data["media"] = (io.BytesIO(phone_jpeg()), "photo.jpg")
    resp = post(client, key, data, content_type="multipart/form-data")
    assert resp.status_code == 400
    assert "outside" in resp.json[0]["description"]
    for model in (Tip, Photo, PartnerRequest, ReporterIdentity):
        assert count(seeded, model) == 0, model
    assert stored_files(settings) == []  # refused before the photo was written
    assert route_calls == [centre_of("G4")]
    route_calls.clear()
    data = spec_post("G1")
    data["media"] = (io.BytesIO(phone_jpeg()), "photo.jpg")
    assert post(client, key, data, content_type="multipart/form-data").status_code == 201
    assert route_calls == [centre_of("G1")]  # routed once: the check uses submit_tip's placement
    assert count(seeded, Photo) == 1 and stored_files(settings)


def test_an_unlimited_partner_routes_once(client, key, route_calls):
    assert post(client, key, spec_post("G2")).status_code == 201
    assert route_calls == [centre_of("G2")]


def test_partner_grids_check_the_point_that_is_kept(client, seeded, settings):
    """Without lat/long, a photo's GPS places the tip: that point is the one checked."""
    _pid, key = make_partner(seeded, settings, "Mall", "Mall", grid_paths=["C/T1/V1/G1"])
    address_only = {k: v for k, v in spec_post().items() if k not in ("lat", "long")}
    outside = {**address_only, "media": (io.BytesIO(phone_jpeg(gps=centre_of("G4"))), "a.jpg")}
    resp = post(client, key, outside, content_type="multipart/form-data")
    assert resp.status_code == 400
    assert count(seeded, Tip) == 0 and stored_files(settings) == []
    inside = {**address_only, "media": (io.BytesIO(phone_jpeg(gps=centre_of("G1"))), "b.jpg")}
    resp = post(client, key, inside, content_type="multipart/form-data")
    assert resp.status_code == 201, resp.data
    with seeded() as s:
        tip = s.scalar(select(Tip))
    assert tip.grid_path == "C/T1/V1/G1" and tip.location_source == "exif"
    # Neither a point nor a known place: nothing shows the tip is in the partner's grids.
    assert post(client, key, address_only).status_code == 400


def test_idempotency_key_replays_the_same_request(client, key, seeded):
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = post(client, key, spec_post(), headers=headers)
    again = post(client, key, spec_post(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json == again.json
    assert count(seeded, Tip) == 1
    changed = post(client, key, spec_post(description="something else"), headers=headers)
    assert changed.status_code == 400
    assert count(seeded, Tip) == 1


@pytest.fixture
def limited_app(settings, engine, seeded):
    """An app whose reporters may send 2 tips a minute and each partner key 4."""
    from app import create_app

    application = create_app(settings.with_(tips_per_minute=2, partner_tips_per_minute=4))
    yield application
    application.extensions["tipline"].engine.dispose()


def unnamed(**extra) -> dict:
    """The spec's example without any reporter field: filed as the key's own reporter."""
    return {k: v for k, v in spec_post(**extra).items() if k not in PERSON}


def test_a_partner_key_has_its_own_limit_answered_429_with_retry_after(
    limited_app, seeded, settings
):
    client = limited_app.test_client()
    _pid, key = make_partner(seeded, settings)
    # The key's own reporter is held to the key's 4, not to a reporter's 2.
    codes = [post(client, key, unnamed(description=f"tip {n}")).status_code for n in range(3)]
    assert codes == [201, 201, 201]
    assert post(client, key, spec_post(description="named")).status_code == 201  # the 4th
    for fmt in ("json", "xml"):
        # A person not yet counted, on the same key: the key's budget is spent.
        over = post(client, key, spec_post(email=f"{fmt}@example.org", locale="en"), fmt=fmt)
        assert over.status_code == 429
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        if fmt == "json":
            [error] = over.json
            assert error["code"] == 429 and "at most 4 a minute" in error["description"]
        else:
            assert xml(over).findtext("error/code") == "429"
    assert count(seeded, Tip) == 4
    # Another partner's key has a budget of its own.
    _other, other_key = make_partner(seeded, settings, "Guard Post", "Guard Post Ltd")
    assert post(client, other_key, unnamed()).status_code == 201


def test_a_named_person_keeps_a_reporters_limit(limited_app, seeded, settings):
    client = limited_app.test_client()
    _pid, key = make_partner(seeded, settings)
    codes = [post(client, key, spec_post(description=f"tip {n}")).status_code for n in range(3)]
    assert codes == [201, 201, 429]  # the person's 2 a minute, well within the key's 4
    assert count(seeded, Tip) == 2


def test_a_limiter_outage_lets_partner_requests_through(limited_app, seeded, settings):
    class Down:
        def hit(self, *args):
            raise ConnectionError("redis down")

        peek = hit

    limited_app.extensions["tipline"].limiter = Down()  # Redis unreachable
    _pid, key = make_partner(seeded, settings)
    codes = [post(limited_app.test_client(), key, unnamed()).status_code for _ in range(5)]
    assert codes == [201] * 5  # fail open: no tip is lost to an outage


def test_replays_do_not_count_against_the_key(limited_app, seeded, settings):
    client = limited_app.test_client()
    _pid, key = make_partner(seeded, settings)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = post(client, key, unnamed(), headers=headers)
    for _ in range(5):
        again = post(client, key, unnamed(), headers=headers)
        assert again.status_code == 201 and again.json == first.json
    fresh = [
        post(client, key, unnamed(description=f"tip {n}"), headers={"Idempotency-Key": str(k)})
        for n, k in enumerate(uuid.uuid4() for _ in range(4))
    ]
    assert [r.status_code for r in fresh] == [201, 201, 201, 429]
    assert count(seeded, Tip) == 4


# --- GET requests ----------------------------------------------------------------------------


def _file(client, key, n=3):
    refs = []
    for i in range(n):
        code = "theft" if i % 2 == 0 else "suspicious"
        data = spec_post(f"G{i % 4 + 1}", service_code=code, description=f"tip {i}")
        if code != "theft":
            data = {k: v for k, v in data.items() if not k.startswith("attribute")}
        resp = post(client, key, data)
        assert resp.status_code == 201, resp.data
        refs.append(resp.json[0]["service_request_id"])
    return refs


def test_get_requests_lists_own_newest_first_in_json_and_xml(client, key):
    refs = _file(client, key)
    body = client.get(f"{V2}/requests.json", query_string={"api_key": key}).json
    assert [r["service_request_id"] for r in body] == refs[::-1]
    first = body[-1]
    assert first["status"] == "open" and first["status_notes"] == "已收到，等待处理"
    assert first["service_code"] == "theft" and first["service_name"] == "盗窃"
    assert first["agency_responsible"] == "网格1 · 测试派出所"
    for name in ("requested_datetime", "updated_datetime", "expected_datetime"):
        parsed = dt.datetime.fromisoformat(first[name])
        assert parsed.utcoffset() == dt.timedelta(hours=8)
    assert first["expected_datetime"] > first["requested_datetime"]
    assert isinstance(first["lat"], float) and first["address"] == "1234 5th street"
    root = xml(client.get(f"{V2}/requests.xml", query_string={"api_key": key, "locale": "en"}))
    assert root.tag == "service_requests"
    assert [r.findtext("service_request_id") for r in root.findall("request")] == refs[::-1]
    assert root.findtext("request/status_notes") == "Received, waiting to be handled"


def test_get_requests_filters(client, key):
    refs = _file(client, key, 4)
    q = {"api_key": key}

    def ids(**params):
        resp = client.get(f"{V2}/requests.json", query_string={**q, **params})
        assert resp.status_code == 200, resp.data
        return [r["service_request_id"] for r in resp.json]

    assert ids(service_request_id=f"{refs[0]},{refs[2]}") == [refs[2], refs[0]]
    assert ids(service_request_id="T-000000,nonsense") == []
    assert sorted(ids(service_code="suspicious")) == sorted([refs[1], refs[3]])
    assert ids(status="closed") == []
    assert len(ids(status="open,closed")) == 4
    now = dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(days=1)).isoformat()
    assert len(ids(start_date=start, end_date=(now + dt.timedelta(days=1)).isoformat())) == 4
    assert ids(end_date=(now - dt.timedelta(days=2)).isoformat()) == []
    assert ids(page_size="2") == refs[::-1][:2]
    assert ids(page_size="2", page="2") == refs[::-1][2:]


@pytest.mark.parametrize(
    "params",
    [
        {"start_date": "2010-05-24T00:00:00Z", "end_date": "2010-09-24T00:00:00Z"},  # > 90 days
        {"start_date": "2010-06-24T00:00:00Z", "end_date": "2010-05-24T00:00:00Z"},  # reversed
        {"start_date": "2010-05-24T00:00:00"},  # no time zone
        {"start_date": "yesterday"},
        {"status": "pending"},
        {"page_size": "1001"},
        {"page": "0"},
    ],
)
def test_bad_request_queries_are_400(client, key, params):
    for fmt in ("json", "xml"):
        resp = client.get(f"{V2}/requests.{fmt}", query_string={"api_key": key, **params})
        assert resp.status_code == 400
        if fmt == "xml":
            assert xml(resp).findtext("error/code") == "400"


def test_spec_date_example_is_accepted(client, key):
    resp = client.get(
        f"{V2}/requests.xml",
        query_string={
            "api_key": key,
            "start_date": "2010-05-24T00:00:00Z",
            "end_date": "2010-06-24T00:00:00Z",
            "status": "open",
        },
    )
    assert resp.status_code == 200
    assert xml(resp).findall("request") == []


def test_one_request_and_token_in_json_and_xml(client, key):
    answer = post(client, key, spec_post()).json[0]
    ref, token = answer["service_request_id"], answer["token"]
    one = client.get(f"{V2}/requests/{ref}.json", query_string={"api_key": key}).json
    assert [r["service_request_id"] for r in one] == [ref]
    root = xml(client.get(f"{V2}/requests/{ref}.xml", query_string={"api_key": key}))
    assert root.findtext("request/service_request_id") == ref
    found = client.get(f"{V2}/tokens/{token}.json", query_string={"api_key": key}).json
    assert found == [{"service_request_id": ref, "token": token}]
    root = xml(client.get(f"{V2}/tokens/{token}.xml", query_string={"api_key": key}))
    assert root.findtext("request/service_request_id") == ref
    missing = client.get(f"{V2}/tokens/nope.xml", query_string={"api_key": key})
    assert missing.status_code == 404 and xml(missing).findtext("error/code") == "404"


def test_a_partner_sees_only_its_own_requests(client, key, seeded, settings):
    answer = post(client, key, spec_post()).json[0]
    _pid, other = make_partner(seeded, settings, "Other", "Other Org")
    ref, token = answer["service_request_id"], answer["token"]
    q = {"api_key": other}
    assert client.get(f"{V2}/requests.json", query_string=q).json == []
    assert (
        client.get(f"{V2}/requests.json", query_string={**q, "service_request_id": ref}).json == []
    )
    for url in (f"{V2}/requests/{ref}.json", f"{V2}/tokens/{token}.json"):
        resp = client.get(url, query_string=q)
        assert resp.status_code == 404, url  # never 403: the request's existence is not told
    # An API-channel tip is nobody's Open311 request either.
    api = client.post(
        "/api/v1/tips",
        json={"category": "theft", "description": "x", "latitude": 40.635, "longitude": 122.495},
    )
    assert api.status_code == 201
    assert (
        client.get(
            f"{V2}/requests/{api.json['ref']}.json", query_string={"api_key": key}
        ).status_code
        == 404
    )


# --- keys ----------------------------------------------------------------------------------


def _every_method(ref="T-000000", token="no-such-token"):  # noqa: S107 (not a secret)
    return [
        ("GET", "discovery"),
        ("GET", "services"),
        ("GET", "services/theft"),
        ("GET", "requests"),
        ("GET", f"requests/{ref}"),
        ("GET", f"tokens/{token}"),
        ("POST", "requests"),
    ]


def _call(client, method, path, fmt, key):
    if method == "POST":
        return post(client, key, spec_post(), fmt=fmt)
    query = {"api_key": key} if key is not None else {}
    return client.get(f"{V2}/{path}.{fmt}", query_string=query)


def test_no_wrong_or_revoked_key_is_403_on_every_method(client, key, partner, seeded):
    answer = post(client, key, spec_post()).json[0]
    methods = _every_method(answer["service_request_id"], answer["token"])
    wrong = key[:-4] + "AAAA"
    for method, path in methods:
        for fmt in ("json", "xml"):
            for bad in (None, "", wrong):
                resp = _call(client, method, path, fmt, bad)
                assert resp.status_code == 403, (method, path, fmt, bad)
                if fmt == "json":
                    assert resp.json[0]["code"] == 403
                else:
                    assert xml(resp).findtext("error/code") == "403"
            assert _call(client, method, path, fmt, key).status_code in (200, 201)
    with seeded() as s:
        assert revoke_partner(s, partner[0]) is True
        s.commit()
    for method, path in methods:
        assert _call(client, method, path, "json", key).status_code == 403, (method, path)
    assert count(seeded, Tip) == 1 + 2  # the first one plus the two checks of POST above


def test_key_in_header_works_and_last_used_is_recorded(client, key, seeded):
    with seeded() as s:
        assert s.scalar(select(Partner.last_used_at)) is None
    resp = client.get(f"{V2}/services.json", headers={"X-Api-Key": key})
    assert resp.status_code == 200
    with seeded() as s:
        assert s.scalar(select(Partner.last_used_at)) is not None


def test_reporter_fields_never_appear_in_any_response(client, key):
    answer = post(client, key, spec_post()).json[0]
    ref, token = answer["service_request_id"], answer["token"]
    seen = b""
    for method, path in _every_method(ref, token):
        for fmt in ("json", "xml"):
            seen += _call(client, method, path, fmt, key).data
    seen += client.get(
        f"{V2}/requests.json", query_string={"api_key": key, "service_request_id": ref}
    ).data
    assert ref.encode() in seen
    for value in PERSON.values():
        assert value.encode() not in seen, value
        assert value.lower().encode() not in seen, value
    assert b"R-" not in seen  # no pseudonyms either


def test_unknown_paths_under_open311_are_404_envelopes(client, key):
    resp = client.get(f"{V2}/requests.csv", query_string={"api_key": key})
    assert resp.status_code == 404 and resp.json[0]["code"] == 404
    resp = client.get(f"{V2}/nothing.xml")
    assert resp.status_code == 404 and xml(resp).findtext("error/code") == "404"


def test_media_url_is_never_fetched(client, key):
    import http.server
    import threading

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/photo.jpg"
        assert post(client, key, spec_post(media_url=url)).status_code == 201
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []
