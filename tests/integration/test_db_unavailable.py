"""QUALITY.md 34: the database away is 503 + Retry-After in each surface's envelope; both DBs.

One rule (app/db_errors.py) serves the error handlers and the commit after each request.
Outages here are real: a database that cannot be reached (a missing SQLite directory, a
PostgreSQL port nobody listens on), a pool with no free connection, and a PostgreSQL
connection the server ends between a request's work and its commit.
"""

from __future__ import annotations

import json
import logging
import uuid
import xml.etree.ElementTree as ET

import pytest
from flask import g
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import create_app
from app.db import make_engine, unit_of_work
from app.db_errors import RETRY_AFTER_S, database_unavailable
from app.partners.keys import create_partner
from app.reports.models import Category, Tip
from tests.extras import PASSWORD, add_staff, add_tip, sign_in
from tests.layers import centre_of

UNAVAILABLE = {"code": "unavailable", "message": "temporarily unavailable, please retry"}


def _tip_body() -> str:
    lat, lon = centre_of("G1")
    return json.dumps(
        {"category": "theft", "description": "电动车被盗", "latitude": lat, "longitude": lon}
    )


def _unreachable(url: str, tmp_path) -> str:
    """The same kind of database, somewhere it cannot be reached."""
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/missing/dir/tipline.db"
    return make_url(url).set(port=1).render_as_string(hide_password=False)


@pytest.fixture
def gone(settings, tmp_path):
    """A client of the app whose database cannot be reached at all."""
    app = create_app(settings.with_(database_url=_unreachable(settings.database_url, tmp_path)))
    yield app.test_client()
    app.extensions["tipline"].engine.dispose()


def _assert_logged_as_passing(caplog) -> None:
    """One warning per outage, no traceback, nothing at error level."""
    warnings = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# --- the rule -------------------------------------------------------------------------------


def test_the_rule_tells_an_outage_from_a_bug(settings, engine, seeded, tmp_path):
    away = make_engine(_unreachable(settings.database_url, tmp_path))
    with pytest.raises(OperationalError) as refused:
        away.connect()
    away.dispose()
    assert database_unavailable(refused.value)

    with seeded() as s, pytest.raises(IntegrityError) as clash:
        again = {"name_zh": "重复", "name_en": "again", "severity": 1}
        s.execute(insert(Category).values(code="theft", ack_minutes=1, resolve_minutes=1, **again))
    assert not database_unavailable(clash.value)
    assert not database_unavailable(ValueError("not a database error"))

    # Every connection of the pool in use, and no waiting allowed.
    small = create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=0)
    with small.connect(), pytest.raises(PoolTimeout) as full:
        small.connect()
    small.dispose()
    assert database_unavailable(full.value)


# --- each surface, with the database unreachable ----------------------------------------------


def test_the_api_answers_in_its_json_envelope(gone, caplog):
    read = gone.get("/api/v1/categories")
    write = gone.post(
        "/api/v1/tips",
        data=_tip_body(),
        content_type="application/json",
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    for resp in (read, write):
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert resp.json == {**UNAVAILABLE, "errors": {}}
    _assert_logged_as_passing(caplog)


def test_the_admin_answers_with_its_page_and_json_for_scripts(gone, caplog):
    gone.set_cookie("tipline_admin", "a-session-token", path="/admin")
    page = gone.get("/admin/")
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert page.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert "503" in page.text and "Traceback" not in page.text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    script = gone.get("/admin/", headers={"Accept": "application/json"})
    assert script.status_code == 503 and script.json["code"] == "unavailable"
    assert script.headers["Retry-After"] == str(RETRY_AFTER_S)
    _assert_logged_as_passing(caplog)


def test_open311_answers_in_its_envelope_in_json_and_xml(gone, caplog):
    as_json = gone.get("/open311/v2/services.json?api_key=some-key")
    assert as_json.status_code == 503
    assert as_json.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert as_json.json == [{"code": 503, "description": UNAVAILABLE["message"]}]
    as_xml = gone.get("/open311/v2/services.xml?api_key=some-key")
    assert as_xml.status_code == 503 and as_xml.mimetype == "application/xml"
    assert as_xml.headers["Retry-After"] == str(RETRY_AFTER_S)
    error = ET.fromstring(as_xml.data).find("error")  # noqa: S314 (our own output)
    assert (error.findtext("code"), error.findtext("description")) == (
        "503",
        UNAVAILABLE["message"],
    )
    _assert_logged_as_passing(caplog)


def test_the_form_pages_answer_503_with_retry_after(gone, caplog):
    # A page in the reader's language, not JSON: volunteers open these in a browser.
    for resp in (gone.get("/report"), gone.post("/status", data={"ref": "T-7K3M9Q"})):
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert resp.mimetype == "text/html" and resp.headers["Cache-Control"] == "no-store"
        assert "暂时无法连接" in resp.get_data(as_text=True)
    english = gone.get("/report?lang=en").get_data(as_text=True)
    assert "Temporarily unavailable" in english and "Traceback" not in english
    _assert_logged_as_passing(caplog)


# --- the commit after the work: the server ends the connection in between --------------------


@pytest.fixture
def cut_before_commit(app, settings):
    """Arm to have PostgreSQL end the request's connection after the view, before the commit."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("a server that ends a connection needs a server: PostgreSQL only")
    admin = make_engine(settings.database_url)
    armed: list[bool] = []

    @app.after_request  # registered last, so it runs before the commit hook
    def _cut(response):
        if armed and "db" in g:
            armed.clear()
            pid = g.db.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with admin.connect() as conn:  # waits until the backend is gone
                assert conn.execute(text("SELECT pg_terminate_backend(:p, 10000)"), {"p": pid})
        return response

    yield lambda: armed.append(True)
    admin.dispose()


def _count_tips(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Tip))


def test_an_api_tip_whose_commit_fails_is_not_acknowledged(
    client, seeded, cut_before_commit, caplog
):
    key = str(uuid.uuid4())
    headers = {"Idempotency-Key": key}
    cut_before_commit()
    cut = client.post(
        "/api/v1/tips", data=_tip_body(), content_type="application/json", headers=headers
    )
    assert cut.status_code == 503 and cut.json == {**UNAVAILABLE, "errors": {}}
    assert cut.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert _count_tips(seeded) == 0
    _assert_logged_as_passing(caplog)
    retry = client.post(
        "/api/v1/tips", data=_tip_body(), content_type="application/json", headers=headers
    )
    assert retry.status_code == 201 and _count_tips(seeded) == 1


def test_an_admin_action_whose_commit_fails_shows_the_admin_page(
    client, seeded, settings, cut_before_commit, caplog
):
    with unit_of_work(seeded) as s:
        add_staff(s, "chief", "admin", password=PASSWORD)
        ref = add_tip(s, settings, at=centre_of("G1")).ref
    csrf = sign_in(client, "chief")
    cut_before_commit()
    page = client.post(
        f"/admin/tips/{ref}/actions", data={"action": "acknowledge", "csrf_token": csrf}
    )
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert page.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert "chief" in page.text  # the signed-in admin page, not a bare error
    with seeded() as s:
        assert s.scalar(select(Tip.status).where(Tip.ref == ref)) == "new"
    _assert_logged_as_passing(caplog)


def test_an_open311_request_whose_commit_fails_answers_in_its_envelope(
    client, seeded, settings, cut_before_commit, caplog
):
    with unit_of_work(seeded) as s:
        _, key = create_partner(s, settings, name="Alarm Co", organisation="Alarm Co Ltd")
    lat, lon = centre_of("G1")
    body = {
        "api_key": key,
        "service_code": "theft",
        "lat": str(lat),
        "long": str(lon),
        "description": "自行车被偷",
    }
    cut_before_commit()
    cut = client.post("/open311/v2/requests.json", data=body)
    assert cut.status_code == 503 and cut.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert cut.json == [{"code": 503, "description": UNAVAILABLE["message"]}]
    assert _count_tips(seeded) == 0
    _assert_logged_as_passing(caplog)
