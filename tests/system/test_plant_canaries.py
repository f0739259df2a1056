"""Plant the canaries through normal use of the running system, failure paths included.

Staff sign-in (session cookie, CSRF tokens), the Telegram webhook (right and wrong
secrets), a reporter's API token, an anonymous tip and its receipt, an Open311
request with a name, an email and a phone number, and refused input carrying tip
text. Each step checks its own answer; test_zz_log_canaries.py then checks that
none of these values reached any log.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid

from tests.system import canaries, tally
from tests.system.harness import get, noise_jpeg, post_tip, reporter_token, request

CSRF_INPUT = re.compile(r'name="csrf_token"\s+value="([^"]+)"')


def _cookie(head: dict, name: str) -> str | None:
    for line in head.get("set-cookie", "").splitlines():
        if line.startswith(f"{name}="):
            return line.split(";", 1)[0].split("=", 1)[1] or None
    return None


def _form(fields: dict) -> bytes:
    return urllib.parse.urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_staff_session_and_csrf(web_server):
    status, page, head = request("GET", web_server.url("/admin/login"))
    assert status == 200
    login_csrf = CSRF_INPUT.search(page.decode()).group(1)
    assert _cookie(head, "tipline_login") == login_csrf
    canaries.plant("login csrf", login_csrf)

    status, _, head = request(
        "POST",
        web_server.url("/admin/login"),
        body=_form(
            {"username": "supervisor", "password": "tipline-demo", "csrf_token": login_csrf}
        ),
        headers={**FORM, "Cookie": f"tipline_login={login_csrf}"},
    )
    assert status == 303
    session = _cookie(head, "tipline_admin")
    canaries.plant("session cookie", session)
    cookie = {"Cookie": f"tipline_admin={session}"}

    status, page, _ = request("GET", web_server.url("/admin/"), headers=cookie)
    assert status == 200
    csrf = CSRF_INPUT.search(page.decode()).group(1)
    canaries.plant("session csrf", csrf)

    # A state change without the token is refused; with it, the session ends server-side.
    status, _, _ = request("POST", web_server.url("/admin/logout"), body=b"", headers=cookie)
    assert status == 403
    status, _, _ = request(
        "POST",
        web_server.url("/admin/logout"),
        body=_form({"csrf_token": csrf}),
        headers={**FORM, **cookie},
    )
    assert status == 303
    status, _, head = request("GET", web_server.url("/admin/"), headers=cookie)
    assert status in (302, 303) and "/admin/login" in head["location"]


def test_webhook_secrets(system_env, web_server):
    update = {
        "update_id": 990_000_001,
        "message": {
            "message_id": 1,
            "date": 1_780_000_000,
            "chat": {"id": 990_000_001, "type": "private", "first_name": "CanaryFirst"},
            "from": {"id": 990_000_001, "is_bot": False, "first_name": "CanaryFirst"},
            "text": canaries.TIP_TEXT,
        },
    }
    body = json.dumps(update).encode()
    url = web_server.url("/telegram/webhook")
    json_type = {"Content-Type": "application/json"}
    for secret in (None, canaries.WRONG_WEBHOOK_SECRET):
        head = {**json_type, **({"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {})}
        assert request("POST", url, body=body, headers=head)[0] == 403
    stored = "SELECT count(*) FROM bot_inbox WHERE update_id = 990000001"
    assert system_env.scalar(stored) == 0
    head = {**json_type, "X-Telegram-Bot-Api-Secret-Token": canaries.WEBHOOK_SECRET}
    assert request("POST", url, body=body, headers=head)[0] == 200
    assert system_env.scalar(stored) == 1


def test_reporter_token_and_anonymous_receipt(system_env, web_server):
    token = reporter_token(system_env, web_server.url())
    canaries.plant("reporter token", token)
    assert get(web_server.url("/api/v1/me"), headers={"Authorization": f"Bearer {token}"})[0] == 200

    status, tip, _ = post_tip(
        web_server.url(), fields=canaries.tip_fields(), photos=[noise_jpeg()], key=str(uuid.uuid4())
    )
    assert status == 201
    canaries.plant("receipt", tip["receipt"])
    canaries.plant("receipt digits", tip["receipt"].replace("-", ""))
    status, seen, _ = get(
        web_server.url(f"/api/v1/tips/{tip['ref']}"), headers={"X-Tip-Receipt": tip["receipt"]}
    )
    assert status == 200 and seen["ref"] == tip["ref"]
    tally.add("tips acknowledged")


def test_open311_personal_fields(system_env, web_server):
    key = system_env.run_cli("partners", "create", "Canary Partner", secret=True).stdout.split()[-1]
    canaries.plant("open311 api key", key)
    fields = {
        "service_code": "suspicious",
        "lat": f"{canaries.LAT:.5f}",
        "long": f"{canaries.LON:.5f}",
        "address_string": canaries.ADDRESS,
        "description": canaries.tip_fields()["description"],
        "email": canaries.EMAIL,
        "phone": canaries.PHONE,
        "first_name": canaries.REPORTER_NAMES[0],
        "last_name": canaries.REPORTER_NAMES[1],
    }
    status, body, _ = request(
        "POST",
        web_server.url("/open311/v2/requests.json"),
        body=_form(fields),
        headers={**FORM, "X-Api-Key": key, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert status == 201, body
    tally.add("tips acknowledged")


def test_refused_input_carrying_canaries(system_env, web_server):
    """Failure paths log too: refusals must not quote what was sent."""
    before = system_env.counts()["tips"]
    bad = [
        canaries.tip_fields(latitude="91"),
        canaries.tip_fields(category="no-such-category"),
        {**canaries.tip_fields(), "grid_id": 1, "points": 100},
    ]
    for fields in bad:
        status, body, _ = post_tip(web_server.url(), fields=fields, key=str(uuid.uuid4()))
        assert 400 <= status < 500 and body["code"], body
    status, body, _ = post_tip(
        web_server.url(),
        fields=canaries.tip_fields(),
        photos=[
            ("canary.jpg", b"\xff\xd8\xff\xe0 not really a jpeg " + canaries.TIP_TEXT.encode())
        ],
        key=str(uuid.uuid4()),
    )
    assert status in (400, 422), body
    status, _, _ = request(
        "POST",
        web_server.url("/api/v1/tips"),
        body=b'{"description": "' + canaries.TIP_TEXT.encode() + b'", "latitude": ',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert system_env.counts()["tips"] == before
