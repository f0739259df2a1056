"""Invites, /me, grid look-up, categories, health, OpenAPI and early 413s."""

from __future__ import annotations

import re
import socket
import threading

import pytest
from werkzeug.serving import make_server

from app.people.services import create_invites
from tests.layers import centre_of


def make_invite(seeded, settings, role="volunteer") -> str:
    with seeded() as s:
        (code,) = create_invites(s, settings.secret_key, role)
        s.commit()
    return code


def test_invite_redeems_once_for_a_token(client, seeded, settings):
    code = make_invite(seeded, settings)
    resp = client.post("/api/v1/reporters", json={"invite": code.lower()})
    assert resp.status_code == 201, resp.json
    assert re.fullmatch(r"R-[0-9A-HJKMNP-TV-Z]{4,6}", resp.json["pseudonym"])
    assert resp.json["role"] == "volunteer"
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {resp.json['token']}"})
    assert me.status_code == 200 and me.json["pseudonym"] == resp.json["pseudonym"]
    again = client.post("/api/v1/reporters", json={"invite": code})
    assert again.status_code == 422 and again.json["code"] == "invalid_invite"


@pytest.mark.parametrize(
    "body", [{"invite": "AAAA-BBBB-CCCC"}, {}, {"invite": 5}, {"invite": "ok", "role": "admin"}]
)
def test_bad_invites_are_4xx(client, seeded, body):
    resp = client.post("/api/v1/reporters", json=body)
    assert resp.status_code == 422
    assert resp.json["code"] in ("invalid_invite", "validation_error")


def test_me_needs_a_token(client, seeded):
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Basic x"}).status_code == 401


def test_grid_lookup(client, seeded):
    lat, lon = centre_of("G4")
    resp = client.get(f"/api/v1/grids/lookup?lat={lat}&lon={lon}")
    assert resp.status_code == 200
    assert resp.json["code"] == "G4" and resp.json["path"][0]["code"] == "C"
    assert client.get("/api/v1/grids/lookup?lat=10&lon=10").status_code == 404
    bad = client.get("/api/v1/grids/lookup?lat=abc&lon=10")
    assert bad.status_code == 422 and "lat" in bad.json["errors"]


def test_categories_have_both_names(client, seeded):
    cats = client.get("/api/v1/categories").json
    assert len(cats) == 11
    theft = next(c for c in cats if c["code"] == "theft")
    assert theft["name_zh"] == "盗窃" and theft["name_en"] == "Theft"


def test_health_and_readiness(client, seeded):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readiness_fails_when_the_database_is_gone(tmp_path, settings):
    from app import create_app

    broken = settings.with_(database_url=f"sqlite:///{tmp_path}/missing/dir/x.db")
    resp = create_app(broken).test_client().get("/readyz")
    assert resp.status_code == 503 and resp.headers["Retry-After"]


def test_openapi_document_lists_the_api(client, seeded):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/v1/tips",
        "/api/v1/tips/{ref}",
        "/api/v1/categories",
        "/api/v1/grids/lookup",
        "/api/v1/reporters",
        "/api/v1/me",
    ):
        assert path in spec["paths"], path
    body = spec["paths"]["/api/v1/tips"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)


def test_unknown_routes_and_methods_are_json(client, seeded):
    assert client.get("/api/v1/nope").json["code"] == "not_found"
    assert client.delete("/api/v1/tips").json["code"] == "method_not_allowed"


def test_oversize_body_is_refused_before_it_is_read(app):
    """Send only headers announcing 200 MB: the 413 must come without any body sent."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/v1/tips HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 209715200\r\n\r\n"
            )
            reply = b""
            while chunk := sock.recv(65536):  # the server answers and closes
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 413")
        assert b"payload_too_large" in reply
    finally:
        server.shutdown()
