"""The admin pages in Debian's Chromium: a town supervisor triages an urgent tip end to end.

Runs only with TIPLINE_BROWSER_TESTS=1 (CI sets it). The real app is served by werkzeug
in a thread on 127.0.0.1. Console errors (including CSP violations: there is no inline
script or style anywhere) fail the test.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from werkzeug.serving import WSGIRequestHandler, make_server

from app.people.models import StaffUser
from tests.browser.common import WAIT_MS, browser_tests
from tests.integration.test_admin_support import PASSWORD, make_staff, make_tip, tip_row

pytestmark = browser_tests


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Browser flows run on SQLite; the same cases run on both databases in tests/integration."""
    return f"sqlite:///{tmp_path / 'browser.db'}"


class _QuietHandler(WSGIRequestHandler):
    def log(self, *args, **kwargs):
        pass


@pytest.fixture
def server(app):
    """The app on a free port of 127.0.0.1, in a thread."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join()
    httpd.server_close()


def open_page(browser, *, phone: bool = False):
    """A fresh context and page that records console errors and page errors."""
    viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    return context, page


def sign_in(page, base: str, username: str) -> None:
    page.goto(base + "/admin/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(base + "/admin/")


@pytest.fixture
def scene(seeded, settings):
    """A town supervisor, grid workers of G1 and G2, and tips with the urgent one in G1."""
    make_staff(seeded, "town", "supervisor", ["T1"])
    make_staff(seeded, "g1", "grid_worker", ["G1"])
    make_staff(seeded, "g2", "grid_worker", ["G2"])
    make_tip(seeded, settings, grid="G3", category="public_facility", description="路灯不亮")
    make_tip(seeded, settings, grid="G4", category="theft", description="电动车电瓶被盗")
    urgent = make_tip(seeded, settings, grid="G1", description="有人持刀抢劫，快来！", photos=1)
    with seeded() as s:
        g1 = s.scalar(select(StaffUser.id).where(StaffUser.username == "g1"))
    return {"urgent": urgent, "g1": g1}


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_town_supervisor_triages_an_urgent_tip(browser, server, seeded, scene, phone):
    context, page = open_page(browser, phone=phone)
    try:
        sign_in(page, server, "town")
        first = page.locator("#queue li.tip-card").first
        expect(first).to_have_attribute("data-ref", scene["urgent"])
        expect(first.locator(".badge")).to_have_text("紧急")
        first.locator("a.tip-link").click()
        page.wait_for_url(f"{server}/admin/tips/{scene['urgent']}")

        photo = page.locator(".photo-list img").first
        expect(photo).to_be_visible()
        page.wait_for_function(
            "() => { const i = document.querySelector('.photo-list img');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        expect(page.locator("#tip-map.map-ready")).to_be_visible()
        expect(page.locator("#tip-map path.leaflet-interactive")).to_have_count(2)  # grid, point

        page.click("button[data-action=acknowledge]")
        page.wait_for_url("**done=acknowledge")
        expect(page.locator("#tip-status")).to_have_text("已签收")

        page.select_option("select[name=assignee]", str(scene["g1"]))
        page.click("button[data-action=assign]")
        page.wait_for_url("**done=assign")
        expect(page.locator("#tip-status")).to_have_text("已指派")
        expect(page.locator("#tip-assignee")).to_contain_text("g1")
        assert page.problems == []
    finally:
        context.close()
    tip = tip_row(seeded, scene["urgent"])
    assert (tip.status, tip.assignee_id) == ("assigned", scene["g1"])


def test_a_grid_worker_of_another_grid_gets_404(browser, server, seeded, scene):
    context, page = open_page(browser, phone=True)
    try:
        sign_in(page, server, "g2")
        expect(page.locator(f"li[data-ref='{scene['urgent']}']")).to_have_count(0)
        response = page.goto(f"{server}/admin/tips/{scene['urgent']}")
        assert response.status == 404
        expect(page.locator("h1")).to_contain_text("404")
        assert all("404" in p for p in page.problems)  # the failed navigation itself only
    finally:
        context.close()
    assert tip_row(seeded, scene["urgent"]).status == "new"


def test_the_queue_surfaces_a_new_urgent_tip_without_reloading(
    browser, server, seeded, settings, scene
):
    context, page = open_page(browser, phone=True)
    try:
        sign_in(page, server, "town")
        banner = page.locator("#live-banner")
        expect(banner).to_be_hidden()
        page.evaluate("() => { window.__marker = 'same page'; }")
        fresh = make_tip(seeded, settings, grid="G2", category="fire_hazard", description="着火了")
        expect(banner).to_be_visible(timeout=30_000)  # the poll runs every 10 s
        expect(banner.locator(".live-refs a")).to_contain_text(fresh)
        assert page.evaluate("() => window.__marker") == "same page"  # no reload happened
        assert page.problems == []
    finally:
        context.close()
