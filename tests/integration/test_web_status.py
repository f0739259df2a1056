"""GET/POST /status: the anonymous follow-up, with its receipt, rate limit and privacy."""

from __future__ import annotations

import json
import logging
import uuid

from app.i18n import t
from app.people.services import create_invites, redeem_invite
from app.web.views import STATUS_LIMIT
from tests.layers import centre_of


def post_tip(client, token=None, **fields):
    lat, lon = centre_of("G2")
    body = {"category": "theft", "description": "摩托车被偷", "latitude": lat, "longitude": lon}
    body.update(fields)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = client.post(
        "/api/v1/tips", data=json.dumps(body), headers=headers, content_type="application/json"
    )
    assert resp.status_code == 201
    return resp.get_json()


def look_up(client, ref, receipt, lang="zh"):
    return client.post(f"/status?lang={lang}", data={"ref": ref, "receipt": receipt})


def test_right_receipt_shows_the_reporter_side_status(client):
    tip = post_tip(client)
    resp = look_up(client, tip["ref"], tip["receipt"])
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert tip["ref"] in html and t("status.received", "zh") in html
    assert resp.headers["Cache-Control"] == "no-store"
    # Typed without dashes and in lower case, it still matches.
    plain = look_up(client, tip["ref"].lower(), tip["receipt"].replace("-", ""), "en")
    assert plain.status_code == 200 and "Received" in plain.get_data(as_text=True)


def test_wrong_receipt_and_unknown_ref_look_exactly_the_same(client):
    tip = post_tip(client)
    wrong = "0000-0000-0000-0001"
    unknown_ref = "T-0000AA" if tip["ref"] != "T-0000AA" else "T-0000AB"
    a = look_up(client, tip["ref"], wrong)
    b = look_up(client, unknown_ref, wrong)
    c = look_up(client, "not a ref", "")
    assert a.status_code == b.status_code == c.status_code == 404
    body_a = a.get_data(as_text=True).replace(tip["ref"], "REF")
    body_b = b.get_data(as_text=True).replace(unknown_ref, "REF")
    body_c = c.get_data(as_text=True).replace("not a ref", "REF")
    assert body_a == body_b == body_c
    assert t("web.status_not_found", "zh") in body_a
    assert t("status.received", "zh") not in body_a


def test_signed_in_reporters_tip_has_no_receipt_to_look_up(client, session_factory, settings):
    with session_factory() as s:
        (code,) = create_invites(s, settings.secret_key, "volunteer")
        _reporter, token = redeem_invite(s, settings.secret_key, code)
        s.commit()
    tip = post_tip(client, token=token)
    assert "receipt" not in tip
    assert look_up(client, tip["ref"], "1234-5678-9012-3456").status_code == 404


def test_look_ups_are_rate_limited_per_client_without_keeping_the_address(client, app, caplog):
    caplog.set_level(logging.DEBUG)
    address = "203.0.113.77"
    environ = {"REMOTE_ADDR": address}
    for _ in range(STATUS_LIMIT):
        resp = client.post(
            "/status", data={"ref": "T-0000AA", "receipt": "1"}, environ_base=environ
        )
        assert resp.status_code == 404
    limited = client.post("/status", data={"ref": "T-0000AA", "receipt": "1"}, environ_base=environ)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    html = limited.get_data(as_text=True)
    assert t("web.status_rate_limited", "zh", seconds=limited.headers["Retry-After"]) in html
    # Another client is not affected.
    other = client.post(
        "/status", data={"ref": "T-0000AA", "receipt": "1"}, environ_base={"REMOTE_ADDR": "1.2.3.4"}
    )
    assert other.status_code == 404
    assert address not in caplog.text
    limiter = app.extensions["tipline"].limiter
    keys = getattr(limiter, "_events", {})
    assert keys and not any(address in key for key in keys)


def test_status_form_prefills_the_reference_only(client):
    html = client.get("/status?ref=T-7K3M9Q").get_data(as_text=True)
    assert 'value="T-7K3M9Q"' in html
    assert 'name="receipt" required' in html or 'id="receipt"' in html


def test_overlong_input_is_simply_not_found(client):
    resp = client.post("/status", data={"ref": "T-" + "A" * 500, "receipt": "9" * 500})
    assert resp.status_code == 404
