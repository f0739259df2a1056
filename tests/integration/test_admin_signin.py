"""Admin sign-in (QUALITY.md 28-30): throttling, no enumeration, long passwords, sessions, TOTP."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from urllib.parse import urlencode

import pyotp
import pytest
from sqlalchemy import select
from werkzeug.test import encode_multipart

from app.people.models import StaffSession, StaffUser
from app.staff import signin
from app.staff.sessions import (
    ABSOLUTE_TIMEOUT,
    IDLE_TIMEOUT,
    change_staff_role,
    live_session,
    open_session,
    set_staff_active,
)
from tests.integration.test_admin_support import (
    PASSWORD,
    login_form,
    make_staff,
    page_csrf,
    sign_in,
)

COOKIE = "tipline_admin"


@pytest.fixture
def hashes(monkeypatch):
    """Count argon2 verifications (the expensive step the throttle must come before)."""
    calls = []
    real = signin.check_password

    def counting(stored, password):
        calls.append(len(password))
        return real(stored, password)

    monkeypatch.setattr(signin, "check_password", counting)
    return calls


def _attempt(client, username, password, code=""):
    token = login_form(client)
    return client.post(
        "/admin/login",
        data={"csrf_token": token, "username": username, "password": password, "code": code},
    )


def session_cookie(client) -> str | None:
    cookie = client.get_cookie(COOKIE, path="/admin")
    return cookie.value if cookie else None


def test_sign_in_opens_a_session_and_shows_the_queue(app, client, seeded):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    response = sign_in(client, "sup")
    assert response.headers["Location"].endswith("/admin/")
    set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/admin" in set_cookie
    assert "Secure" not in set_cookie  # plain http in tests; see the https case below
    token = session_cookie(client)
    with seeded() as s:
        row = s.scalar(select(StaffSession))
        assert row.token_hash != token and token not in row.token_hash  # stored hashed
    assert client.get("/admin/").status_code == 200


def test_cookie_is_secure_over_https(app, seeded):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    client = app.test_client()
    token = login_form(client)
    response = client.post(
        "/admin/login",
        base_url="https://localhost",
        data={"csrf_token": token, "username": "sup", "password": PASSWORD},
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


def test_unknown_user_and_wrong_password_look_the_same(app, client, seeded, hashes):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    wrong = _attempt(client, "sup", "not the password")
    unknown = _attempt(client, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    # Same body except for the echoed username, which is what the person typed.
    assert wrong.get_data(as_text=True).replace("sup", "X") == unknown.get_data(
        as_text=True
    ).replace("nobody", "X")
    # The unknown user cost a real argon2 verify too (against a dummy hash): same timing.
    assert len(hashes) == 2


def test_five_wrong_passwords_throttle_even_the_right_one(app, client, seeded, hashes):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    for _ in range(5):
        assert _attempt(client, "sup", "wrong").status_code == 401
    right = _attempt(client, "sup", PASSWORD)
    assert right.status_code == 429
    assert int(right.headers["Retry-After"]) >= 1
    assert session_cookie(client) is None
    assert len(hashes) == 5  # the throttled attempt was refused before hashing
    # An unknown name is throttled the same way (no enumeration through the limiter).
    for _ in range(5):
        _attempt(client, "ghost", "wrong")
    assert _attempt(client, "ghost", "wrong").status_code == 429


def test_a_successful_sign_in_clears_the_count(app, client, seeded):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    for _ in range(4):
        _attempt(client, "sup", "wrong")
    sign_in(client, "sup")
    for _ in range(4):
        assert _attempt(client, "sup", "wrong").status_code == 401


@pytest.mark.skipif(
    not os.environ.get("TEST_REDIS_URL"), reason="needs TEST_REDIS_URL (CI sets it)"
)
def test_throttle_is_shared_through_redis(settings, engine, seeded):
    from app import create_app

    name = f"sup-{uuid.uuid4().hex[:8]}"
    make_staff(seeded, name, "supervisor", ["T1"])
    redis_settings = settings.with_(redis_url=os.environ["TEST_REDIS_URL"])
    first, second = create_app(redis_settings), create_app(redis_settings)  # two "workers"
    try:
        for i in range(5):
            worker = (first if i % 2 else second).test_client()
            assert _attempt(worker, name, "wrong").status_code == 401
        assert _attempt(first.test_client(), name, PASSWORD).status_code == 429
    finally:
        for a in (first, second):
            a.extensions["tipline"].engine.dispose()


def test_long_passwords_are_accepted(app, client, seeded):
    long_password = "长密码" * 30 + "x" * 100  # 64+ characters, 370 bytes
    make_staff(seeded, "sup", "supervisor", ["T1"], password=long_password)
    sign_in(client, "sup", long_password)


def test_a_megabyte_password_is_refused_before_hashing(app, client, seeded, hashes):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    token = login_form(client)
    fields = {"csrf_token": token, "username": "sup", "password": "x" * 1_000_000}
    boundary, multipart = encode_multipart(fields)
    for body, content_type in (
        (urlencode(fields), "application/x-www-form-urlencoded"),
        (multipart, f"multipart/form-data; boundary={boundary}"),
    ):
        huge = client.post("/admin/login", data=body, content_type=content_type)
        assert huge.status_code in (400, 413)  # a clear refusal, not a 500
    over_cap = client.post(
        "/admin/login",
        data={"csrf_token": token, "username": "sup", "password": "x" * 2000},
    )
    assert over_cap.status_code == 400
    assert hashes == []
    assert session_cookie(client) is None


def test_every_sign_in_gets_a_new_session(app, client, seeded):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    sign_in(client, "sup")
    first = session_cookie(client)
    sign_in(client, "sup")
    second = session_cookie(client)
    assert first and second and first != second
    other = app.test_client()
    other.set_cookie(COOKIE, first, path="/admin")
    assert other.get("/admin/").status_code == 302  # the earlier session of this browser ended


def test_logout_ends_the_session_server_side(app, client, seeded):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    sign_in(client, "sup")
    stolen = session_cookie(client)
    csrf = page_csrf(client)
    assert client.post("/admin/logout", data={"csrf_token": csrf}).status_code == 303
    replay = app.test_client()
    replay.set_cookie(COOKIE, stolen, path="/admin")
    response = replay.get("/admin/")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    assert replay.get("/admin/queue/updates.json").status_code == 401


def test_disabling_a_user_ends_their_sessions_at_once(app, client, seeded):
    staff_id = make_staff(seeded, "sup", "supervisor", ["T1"])
    sign_in(client, "sup")
    assert client.get("/admin/").status_code == 200
    with seeded() as s:
        set_staff_active(s, staff_id, False)
        s.commit()
    assert client.get("/admin/").status_code == 302
    # ...and they cannot sign in again, with the same answer as a wrong password.
    assert _attempt(client, "sup", PASSWORD).status_code == 401


def test_a_role_change_ends_their_sessions(app, client, seeded):
    staff_id = make_staff(seeded, "sup", "supervisor", ["T1"])
    sign_in(client, "sup")
    with seeded() as s:
        change_staff_role(s, staff_id, "grid_worker")
        s.commit()
    assert client.get("/admin/").status_code == 302
    sign_in(client, "sup")
    assert client.get("/admin/").status_code == 200


def test_sessions_expire_when_idle_and_after_a_shift(session_factory, seeded):
    staff_id = make_staff(seeded, "sup", "supervisor", ["T1"])
    start = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
    with seeded() as s:
        staff = s.get(StaffUser, staff_id)
        opened = open_session(s, staff, now=start)
        s.commit()
        assert live_session(s, opened.token, now=start + IDLE_TIMEOUT / 2) is not None
        assert live_session(s, opened.token, now=start + IDLE_TIMEOUT) is None
        assert live_session(s, opened.token, now=start + ABSOLUTE_TIMEOUT) is None
        assert live_session(s, "tpa_forged", now=start) is None


def test_totp_is_required_when_enabled_and_not_replayable(app, client, seeded):
    secret = pyotp.random_base32()
    make_staff(seeded, "sup", "supervisor", ["T1"], totp_secret=secret)
    assert _attempt(client, "sup", PASSWORD).status_code == 401  # no code
    assert (
        _attempt(
            client,
            "sup",
            PASSWORD,
            code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111",
        ).status_code
        == 401
    )
    code = pyotp.TOTP(secret).now()
    sign_in(client, "sup", code=code)
    # The same code a second time is refused (a shoulder-surfed code is worth one sign-in).
    assert _attempt(app.test_client(), "sup", PASSWORD, code=code).status_code == 401


def test_staff_language_switch(app, client, seeded):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    assert "工作人员登录" in client.get("/admin/login").get_data(as_text=True)
    assert "Staff sign-in" in client.get("/admin/login?lang=en").get_data(as_text=True)
    sign_in(client, "sup")
    assert "待办队列" in client.get("/admin/").get_data(as_text=True)  # Chinese by default
    csrf = page_csrf(client)
    response = client.post(
        "/admin/locale", data={"csrf_token": csrf, "locale": "en", "next": "/admin/"}
    )
    assert response.status_code == 303
    assert "Triage queue" in client.get("/admin/").get_data(as_text=True)
    with seeded() as s:
        assert s.scalar(select(StaffUser.locale).where(StaffUser.username == "sup")) == "en"


def test_sign_in_redirects_only_inside_the_admin(app, client, seeded):
    make_staff(seeded, "sup", "supervisor", ["T1"])
    for target, expected in (
        ("/admin/?priority=urgent", "/admin/?priority=urgent"),
        ("https://evil.example/", "/admin/"),
        ("//evil.example/admin/", "/admin/"),
        ("/api/v1/categories", "/admin/"),
    ):
        token = login_form(client)
        response = client.post(
            "/admin/login",
            data={"csrf_token": token, "username": "sup", "password": PASSWORD, "next": target},
        )
        assert response.status_code == 303
        assert response.headers["Location"] == expected
