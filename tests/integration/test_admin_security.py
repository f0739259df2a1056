"""CSRF on every state change and security headers on every response (QUALITY.md 31)."""

from __future__ import annotations

import re

import pytest

from tests.integration.test_admin_support import (
    PASSWORD,
    make_staff,
    make_tip,
    page_csrf,
    sign_in,
    tip_row,
)


@pytest.fixture
def signed_in(app, client, seeded, settings):
    """A town supervisor signed in, and an urgent tip with a photo in G1."""
    make_staff(seeded, "sup", "supervisor", ["T1"])
    ref = make_tip(seeded, settings, photos=1)
    sign_in(client, "sup")
    return ref


def _unchanged(seeded, ref):
    tip = tip_row(seeded, ref)
    assert tip.status == "new" and tip.acknowledged_at is None
    return tip


def test_state_changes_without_the_token_are_refused(app, client, seeded, signed_in):
    ref = signed_in
    url = f"/admin/tips/{ref}/actions"
    assert client.post(url, data={"action": "acknowledge"}).status_code == 403
    assert (
        client.post(url, data={"action": "acknowledge", "csrf_token": "forged"}).status_code == 403
    )
    assert (
        client.post(url, data={"action": "acknowledge"}, headers={"X-CSRF-Token": ""}).status_code
        == 403
    )
    assert client.post(f"/admin/tips/{ref}/notes", data={"text": "x"}).status_code == 403
    _unchanged(seeded, ref)
    # The header form works for fetch(); the form field for plain forms.
    token = page_csrf(client)
    assert (
        client.post(
            url, data={"action": "acknowledge"}, headers={"X-CSRF-Token": token}
        ).status_code
        == 303
    )
    assert tip_row(seeded, ref).status == "acknowledged"


def test_another_sessions_token_does_not_work(app, client, seeded, signed_in):
    ref = signed_in
    other = app.test_client()
    make_staff(seeded, "sup2", "supervisor", ["T1"])
    sign_in(other, "sup2")
    foreign = page_csrf(other)
    response = client.post(
        f"/admin/tips/{ref}/actions", data={"action": "acknowledge", "csrf_token": foreign}
    )
    assert response.status_code == 403
    _unchanged(seeded, ref)


def test_get_never_changes_state(app, client, seeded, signed_in):
    ref = signed_in
    assert client.get(f"/admin/tips/{ref}/actions?action=acknowledge").status_code == 405
    assert client.get("/admin/logout").status_code == 405
    assert client.get("/admin/").status_code == 200  # still signed in
    _unchanged(seeded, ref)


def test_logout_and_sign_in_need_their_tokens(app, client, seeded, signed_in):
    assert client.post("/admin/logout").status_code == 403
    assert client.get("/admin/").status_code == 200  # the session survived the forged logout
    fresh = app.test_client()
    response = fresh.post("/admin/login", data={"username": "sup", "password": PASSWORD})
    assert response.status_code == 403  # no pre-session token: a login CSRF is refused
    assert fresh.get_cookie("tipline_admin", path="/admin") is None


def _assert_headers(response, *, no_store: bool):
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    if no_store:
        assert headers["Cache-Control"] == "no-store"


def test_security_headers_on_every_response(app, client, seeded, signed_in):
    ref = signed_in
    with seeded() as s:
        from app.reports.models import Photo

        photo_id = s.query(Photo.id).scalar()
    for path, status in (
        ("/admin/", 200),
        (f"/admin/tips/{ref}", 200),
        ("/admin/tips/T-000000", 404),
        ("/admin/nowhere", 404),
        ("/admin/queue/updates.json?since=0", 200),
        (f"/admin/photos/{photo_id}/thumbnail", 200),
        ("/api/v1/categories", 200),
        ("/api/v1/staff/tips", 401),
        ("/api/v1/tips/T-000000", 404),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        _assert_headers(response, no_store=True)
        response.close()
    for path in ("/healthz", "/admin/static/admin.css", "/static/vendor/leaflet/leaflet.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        _assert_headers(response, no_store=False)
        response.close()
    login = app.test_client().get("/admin/login")
    _assert_headers(login, no_store=True)


def test_pages_have_no_inline_script_or_style(app, client, seeded, signed_in):
    ref = signed_in
    for path in ("/admin/login", "/admin/", f"/admin/tips/{ref}"):
        html = client.get(path).get_data(as_text=True)
        assert "<style" not in html
        assert " style=" not in html
        assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler found"
        assert "javascript:" not in html
        for chunk in html.split("<script")[1:]:
            head, _, rest = chunk.partition(">")
            assert 'src="' in head, "inline <script> found"
            assert rest.startswith("</script>")


def test_map_tile_host_is_allowed_for_images(settings, engine, seeded):
    from app import create_app

    tiled = create_app(settings.with_(map_tile_url="https://{s}.tiles.example.org/{z}/{x}/{y}.png"))
    try:
        csp = tiled.test_client().get("/healthz").headers["Content-Security-Policy"]
        assert "img-src 'self' data: https://*.tiles.example.org" in csp
    finally:
        tiled.extensions["tipline"].engine.dispose()
