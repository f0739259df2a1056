"""The mobile form in Debian's Chromium: submit, offline queue, lost responses, receipts, a11y.

Runs only with TIPLINE_BROWSER_TESTS=1 (CI sets it). The real app is served by werkzeug
in a thread on 127.0.0.1 (a secure context, so the service worker runs); a WSGI wrapper
records every POST /api/v1/tips as it reached the server, to count and measure them.
"""

from __future__ import annotations

import io
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlalchemy import func, select
from werkzeug.formparser import parse_form_data
from werkzeug.serving import WSGIRequestHandler, make_server

from app.grids import datum
from app.i18n import t
from app.people.models import Reporter
from app.people.services import create_invites
from app.reports.models import Tip
from tests.browser.common import WAIT_MS, browser_tests
from tests.images import marked_image, phone_jpeg, png_header_only
from tests.layers import centre_of

pytestmark = browser_tests

REF = re.compile(r"T-[0-9A-HJKMNP-TV-Z]{6}")
RECEIPT = re.compile(r"\d{4}-\d{4}-\d{4}-\d{4}")
MAX_UPLOAD = 600 * 1024
ROOT = Path(__file__).resolve().parents[2]
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Browser flows run on SQLite: the database cases of the API run on both elsewhere."""
    return f"sqlite:///{tmp_path / 'browser.db'}"


@dataclass
class TipPost:
    """One POST /api/v1/tips as the server received it."""

    key: str | None
    size: int
    body: bytes
    content_type: str

    def photos(self) -> list[bytes]:
        """The photo files inside the multipart body."""
        environ = {
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": self.content_type,
            "CONTENT_LENGTH": str(self.size),
            "wsgi.input": io.BytesIO(self.body),
        }
        _, _, files = parse_form_data(environ)
        photos = []
        for upload in files.getlist("photos"):
            photos.append(upload.read())
            upload.close()
        return photos


class Recorder:
    """WSGI wrapper that keeps a copy of each tip submission before the app sees it."""

    def __init__(self, app):
        self.app = app
        self.tip_posts: list[TipPost] = []
        self.down = False  # answer every page 503, as while the database restarts
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if self.down and environ["PATH_INFO"] in ("/report", "/status"):
            start_response("503 Service Unavailable", [("Content-Type", "text/html")])
            return [b"<!doctype html><title>503</title><p>down</p>"]
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/api/v1/tips":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            with self._lock:
                self.tip_posts.append(
                    TipPost(
                        environ.get("HTTP_IDEMPOTENCY_KEY"),
                        len(body),
                        body,
                        environ.get("CONTENT_TYPE", ""),
                    )
                )
        return self.app(environ, start_response)


class _QuietHandler(WSGIRequestHandler):
    def log(self, *args, **kwargs):
        pass


@dataclass
class Server:
    url: str
    recorder: Recorder


@contextmanager
def serve(application):
    """Serve the app on a free port of 127.0.0.1, in a thread."""
    recorder = Recorder(application.wsgi_app)
    application.wsgi_app = recorder
    httpd = make_server("127.0.0.1", 0, application, threaded=True, request_handler=_QuietHandler)
    # Join request threads on close, so no response (an open static file) outlives the test.
    httpd.daemon_threads = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}", recorder)
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


@pytest.fixture
def server(app):
    """The test app, served."""
    with serve(app) as running:
        yield running


def new_context(browser, code="G3", **options):
    """A phone-sized context whose location is the middle of grid `code`."""
    lat, lon = centre_of(code)
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        geolocation={"latitude": lat, "longitude": lon, "accuracy": 15},
        permissions=["geolocation"],
        locale="zh-CN",
        **options,
    )
    context.set_default_timeout(WAIT_MS)
    return context


def open_form(context, server: Server, path: str = "/report"):
    """Open the form, collecting console errors and CSP violations."""
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.goto(server.url + path)
    return page


def wait_for_worker(page) -> None:
    """Wait until the service worker controls the page (the shell is cached by then)."""
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")


def fill_tip(page, *, category="theft", text="自行车被偷 bike stolen", photos=(), locate=True):
    page.check(f"#cat-{category}")
    page.fill("#description", text)
    if photos:
        page.set_input_files(
            "#photo-gallery",
            files=[
                {"name": f"IMG_{i:04d}.JPG", "mimeType": "image/jpeg", "buffer": data}
                for i, data in enumerate(photos)
            ],
        )
        page.locator("#photo-list li").nth(len(photos) - 1).wait_for()
    if locate:
        page.click("#locate")
        page.locator("#location-status").filter(has_text="15").wait_for()


def submit(page) -> None:
    page.click("#tip-form button[type=submit]")


def shown_ref(page, selector="#result") -> str:
    """Wait until the element shows a tip reference and return it."""
    locator = page.locator(selector)
    locator.filter(has_text=REF).first.wait_for()
    return REF.search(locator.first.inner_text()).group(0)


def pump_until(page, condition, tries: int = WAIT_MS // 50):
    """Let Playwright deliver events (CDP, server threads) until condition() holds."""
    for _ in range(tries):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError("the condition never held")


def tips_in_db(session_factory) -> list[Tip]:
    with session_factory() as s:
        return list(s.scalars(select(Tip)))


def grainy_photo() -> bytes:
    """A 12 MP JPEG with sensor-like grain: about 6 MB, like a real phone photo."""
    size = (4032, 3024)
    grain = Image.effect_noise(size, 40).convert("RGB")
    buf = io.BytesIO()
    Image.blend(marked_image(*size), grain, 0.5).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_submit_with_photo_and_location_shows_reference_and_routes_to_grid(
    browser, server, session_factory
):
    context = new_context(browser)
    page = open_form(context, server)
    fill_tip(page, photos=[phone_jpeg(800, 600)])
    page.locator("#map .leaflet-marker-icon").wait_for()
    page.locator("#location-grid").filter(has_text="网格3").wait_for()
    submit(page)

    ref = shown_ref(page)
    receipt = RECEIPT.search(page.locator("#result").inner_text())
    assert receipt, "an anonymous tip answers with its 16-digit receipt"
    (tip,) = tips_in_db(session_factory)
    with session_factory() as s:
        tip = s.scalar(select(Tip).where(Tip.ref == ref))
        assert tip.grid_path.endswith("/G3")
        assert tip.location_source == "device" and tip.accuracy_m == 15
        assert len(tip.photos) == 1
        assert tip.reporter_id is None and tip.receipt_hash
    assert len(server.recorder.tip_posts) == 1
    page.locator("#queue .state-sent .ref").filter(has_text=ref).wait_for()
    # The form is empty again for the next tip; the phone keeps only what the list shows.
    assert page.input_value("#description") == ""
    assert not page.problems, page.problems
    context.close()


def test_twelve_megapixel_photos_are_shrunk_upright_and_without_exif(
    browser, server, session_factory
):
    context = new_context(browser)
    page = open_form(context, server)
    # Orientation 6: the camera held upright; the photo must arrive portrait, once.
    fill_tip(page, photos=[phone_jpeg(4032, 3024, orientation=6)], locate=False)
    submit(page)
    shown_ref(page)
    fill_tip(page, photos=[grainy_photo()], locate=False)
    submit(page)
    page.locator("#queue .state-sent").nth(1).wait_for()

    first, second = server.recorder.tip_posts
    for post in (first, second):
        assert post.size <= MAX_UPLOAD, f"{post.size} bytes sent for one 12 MP photo"
        (photo,) = post.photos()
        with Image.open(io.BytesIO(photo)) as im:
            assert im.format == "JPEG"
            assert max(im.size) == 2016
            assert not im.getexif(), "EXIF (GPS, orientation) stays on the phone"
    with Image.open(io.BytesIO(first.photos()[0])) as im:
        assert im.size == (1512, 2016), "upright once: EXIF orientation applied, then dropped"
    print(f"12 MP uploads: {first.size} and {second.size} bytes (grainy original 6 MB)")
    assert len(tips_in_db(session_factory)) == 2
    context.close()


def test_offline_tip_is_queued_survives_reload_and_is_sent_once(browser, server, session_factory):
    context = new_context(browser)
    page = open_form(context, server)
    wait_for_worker(page)
    context.set_offline(True)
    page.locator("#offline-banner").wait_for()
    fill_tip(page, photos=[phone_jpeg(640, 480)])
    submit(page)
    page.locator("#result").filter(has_text=t("web.result_queued", "zh")).wait_for()
    page.locator("#queue .state-queued").wait_for()
    assert server.recorder.tip_posts == []

    # The shell comes from the worker's cache and the queue from IndexedDB.
    response = page.reload()
    assert response.from_service_worker
    page.locator("#queue .state-queued").wait_for()

    context.set_offline(False)
    ref = shown_ref(page, "#queue .state-sent .ref")
    (tip,) = tips_in_db(session_factory)
    assert tip.ref == ref
    assert len(server.recorder.tip_posts) == 1
    page.locator("#queue .state-queued").wait_for(state="detached")
    context.close()


def test_a_server_error_shows_the_cached_form(browser, server, session_factory):
    """A 503 for the page (the database restarting) loads the cached form, not the error."""
    context = new_context(browser)
    page = open_form(context, server)
    wait_for_worker(page)
    server.recorder.down = True
    try:
        response = page.reload()
        assert response.from_service_worker and response.status == 200
        page.locator("#cat-theft").wait_for()
    finally:
        server.recorder.down = False
    fill_tip(page)
    submit(page)
    ref = shown_ref(page)
    assert [t.ref for t in tips_in_db(session_factory)] == [ref]
    assert page.problems == []
    context.close()


def test_lost_response_is_retried_with_the_same_key_and_makes_one_tip(
    browser, server, session_factory
):
    context = new_context(browser)
    lost = []

    def lose_first_response(route):
        if not lost:
            response = route.fetch()  # the server stores the tip and answers...
            lost.append(response.json())
            route.abort("connectionreset")  # ...but the answer never reaches the phone
        else:
            route.continue_()

    context.route("**/api/v1/tips", lose_first_response)
    page = open_form(context, server)
    fill_tip(page, photos=[phone_jpeg(640, 480)])
    submit(page)

    ref = shown_ref(page)
    assert lost and lost[0]["ref"] == ref, "the retry got the original answer"
    (tip,) = tips_in_db(session_factory)
    assert tip.ref == ref
    posts = server.recorder.tip_posts
    assert len(posts) == 2 and posts[0].key == posts[1].key and posts[0].key
    assert RECEIPT.search(page.locator("#result").inner_text()).group(0) == lost[0]["receipt"]
    context.close()


def test_busy_server_is_retried_after_retry_after_and_not_marked_failed(
    browser, server, session_factory
):
    context = new_context(browser)
    answered = []

    def busy_first(route):
        if not answered:
            answered.append(503)
            route.fulfill(
                status=503,
                headers={"Retry-After": "1"},
                json={"code": "unavailable", "message": "temporarily unavailable", "errors": {}},
            )
        else:
            route.continue_()

    context.route("**/api/v1/tips", busy_first)
    page = open_form(context, server)
    fill_tip(page, locate=False)
    submit(page)
    page.locator("#queue .state-queued").wait_for()
    ref = shown_ref(page, "#queue .state-sent .ref")
    assert answered == [503]
    assert len(server.recorder.tip_posts) == 1
    (tip,) = tips_in_db(session_factory)
    assert tip.ref == ref
    context.close()


def test_worker_sends_the_queue_in_the_background_with_the_page_closed(
    browser, server, session_factory
):
    context = new_context(browser)
    page = open_form(context, server)
    wait_for_worker(page)
    context.set_offline(True)
    fill_tip(page, photos=[phone_jpeg(640, 480)])
    submit(page)
    page.locator("#queue .state-queued").wait_for()

    # Background Sync, as the browser fires it when the connection returns.
    blank = context.new_page()
    cdp = context.new_cdp_session(blank)
    registrations = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(r for r in e["registrations"] if not r["isDeleted"]),
    )
    cdp.send("ServiceWorker.enable")
    page.close()
    context.set_offline(False)
    pump_until(blank, lambda: registrations)
    (registration,) = {r["registrationId"]: r for r in registrations}.values()
    cdp.send(
        "ServiceWorker.dispatchSyncEvent",
        {
            "origin": server.url,
            "registrationId": registration["registrationId"],
            "tag": "tipline-outbox",
            "lastChance": False,
        },
    )
    pump_until(blank, lambda: tips_in_db(session_factory))
    assert len(server.recorder.tip_posts) == 1, "the worker sent the queued tip"
    (tip,) = tips_in_db(session_factory)
    revisit = open_form(context, server)
    assert shown_ref(revisit, "#queue .state-sent .ref") == tip.ref
    assert len(server.recorder.tip_posts) == 1
    context.close()


def test_refused_tip_is_kept_to_fix_and_resend(browser, server, session_factory):
    context = new_context(browser)
    page = open_form(context, server)
    fill_tip(page, locate=False, text="x" * 10)
    # A refusal (4xx) must not be retried: make the server see a payload it refuses.
    page.evaluate("document.getElementById('description').removeAttribute('maxlength')")
    page.fill("#description", "x" * 5000)
    submit(page)
    page.locator("#queue .state-failed").wait_for()
    assert len(server.recorder.tip_posts) == 1
    expect(page.locator("#queue .item-error")).to_have_text(t("web.refused_validation_error", "zh"))
    page.click("#queue .state-failed button >> nth=0")  # fix and resend
    expect(page.locator("#description")).to_have_value("x" * 5000)
    page.fill("#description", "修改后 fixed")
    submit(page)
    ref = shown_ref(page)
    page.locator("#queue .state-failed").wait_for(state="detached")
    (tip,) = tips_in_db(session_factory)
    assert tip.ref == ref and tip.description == "修改后 fixed"
    context.close()


def test_bomb_photo_is_refused_and_the_tip_is_resent_without_it(browser, server, session_factory):
    """QUALITY 1 on the form: the server names the photo; the phone still holds the tip."""
    context = new_context(browser)
    page = open_form(context, server)
    page.check("#cat-fire_hazard")
    page.fill("#description", "楼道堆满纸箱")
    page.set_input_files(
        "#photo-gallery",
        files=[
            {"name": "ok.jpg", "mimeType": "image/jpeg", "buffer": phone_jpeg(640, 480)},
            {"name": "bomb.png", "mimeType": "image/png", "buffer": png_header_only(14000, 14000)},
        ],
    )
    page.locator("#photo-list li").nth(1).wait_for()
    submit(page)
    expect(page.locator("#queue .state-failed .item-error")).to_have_text(
        t("web.refused_image_too_large", "zh")
    )
    assert tips_in_db(session_factory) == []
    page.click("#queue .state-failed button >> nth=0")  # fix and resend
    expect(page.locator("#photo-list li")).to_have_count(2)
    expect(page.locator("#description")).to_have_value("楼道堆满纸箱")
    page.click("#photo-list li >> nth=1 >> button")  # remove the refused photo
    expect(page.locator("#photo-list li")).to_have_count(1)
    submit(page)
    ref = shown_ref(page)
    (tip,) = tips_in_db(session_factory)
    assert tip.ref == ref
    with session_factory() as s:
        assert len(s.get(Tip, tip.id).photos) == 1
    context.close()


def test_status_page_shows_status_for_the_right_receipt_only(browser, server):
    context = new_context(browser)
    page = open_form(context, server)
    fill_tip(page, locate=False)
    submit(page)
    ref = shown_ref(page)
    receipt = RECEIPT.search(page.locator("#result").inner_text()).group(0)

    page.goto(f"{server.url}/status?ref={ref}")
    assert page.input_value("#ref") == ref
    page.fill("#receipt", receipt)
    page.click(".status-form button[type=submit]")
    assert page.locator(".status").inner_text() == t("status.received", "zh")

    wrong = "0000-0000-0000-0001"
    page.fill("#receipt", wrong)
    page.click(".status-form button[type=submit]")
    not_found = page.locator("#status-error").inner_text()
    assert not_found == t("web.status_not_found", "zh")
    page.fill("#ref", "T-0000AA")
    page.fill("#receipt", wrong)
    page.click(".status-form button[type=submit]")
    assert page.locator("#status-error").inner_text() == not_found
    context.close()


def test_signed_in_volunteer_sends_as_themselves_and_sees_status(
    browser, server, session_factory, settings
):
    with session_factory() as s:
        (code,) = create_invites(s, settings.secret_key, "volunteer")
        s.commit()
    context = new_context(browser)
    page = open_form(context, server)
    page.fill("#invite", code)
    page.click("#signin-form button[type=submit]")
    page.locator("#signin-who").filter(has_text="R-").wait_for()
    pseudonym = re.search(r"R-[0-9A-Z]{4,6}", page.inner_text("#who")).group(0)

    fill_tip(page, locate=False)
    submit(page)
    ref = shown_ref(page)
    assert not RECEIPT.search(page.locator("#result").inner_text())
    page.locator("#queue .state-sent .status").filter(
        has_text=t("status.received", "zh")
    ).wait_for()
    with session_factory() as s:
        tip = s.scalar(select(Tip).where(Tip.ref == ref))
        reporter = s.scalar(select(Reporter).where(Reporter.pseudonym == pseudonym))
        assert tip.reporter_id == reporter.id

    # Signed in, a volunteer may still choose to send anonymously and get a receipt.
    fill_tip(page, locate=False, category="suspicious")
    page.check("#anonymous")
    submit(page)
    page.locator("#result").filter(has_text=RECEIPT).wait_for()
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Tip).where(Tip.reporter_id.is_(None)))
    context.close()


def run_axe(page) -> list[dict]:
    """Run axe-core in the page (evaluated, so the page's CSP stays on) and keep the worst."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_pages_pass_axe_with_no_serious_violations(browser, server, lang):
    context = new_context(browser)
    page = open_form(context, server, f"/report?lang={lang}")
    assert run_axe(page) == []
    # The busier states: an error summary, a photo, the map and a queued tip.
    submit(page)
    page.locator("#error-summary").wait_for()
    fill_tip(page, photos=[phone_jpeg(640, 480)])
    page.locator("#map .leaflet-marker-icon").wait_for()
    assert run_axe(page) == []
    context.set_offline(True)
    submit(page)
    page.locator("#queue .state-queued").wait_for()
    assert run_axe(page) == []
    context.set_offline(False)
    page.goto(f"{server.url}/status")
    assert run_axe(page) == []
    page.fill("#ref", "T-0000AA")
    page.fill("#receipt", "0000-0000-0000-0001")
    page.click(".status-form button[type=submit]")
    assert run_axe(page) == []
    assert not [p for p in page.problems if "Content Security Policy" in p]
    context.close()


def test_keyboard_reaches_every_control_in_order(browser, server):
    context = new_context(browser)
    page = open_form(context, server)
    seen = []
    for _ in range(30):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id"))
    first_category = next(i for i, x in enumerate(seen) if x.startswith("cat-"))
    order = [first_category] + [
        seen.index(x) for x in ("description", "photo-camera", "photo-gallery", "locate", "address")
    ]
    assert order == sorted(order), seen
    # Arrow keys within the radio group choose a category, as in any native radio group.
    page.focus("#cat-theft")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.querySelector('input[name=category]:checked').value")
    context.close()


DATUM_POINTS = [
    (122.5052, 40.6406),  # the reference city's centre
    (122.35, 40.55),
    (116.397, 39.909),  # Beijing
    (113.264, 23.129),  # Guangzhou
    (87.617, 43.825),  # Urumqi
    (2.35, 48.85),  # Paris: outside China, unchanged by GCJ-02
]


def test_datum_script_matches_the_server_conversions(browser, server):
    """static/datum.js is a port of app/grids/datum.py: both must give the same points."""
    context = new_context(browser)
    page = open_form(context, server)
    js = page.evaluate(
        """points => points.map(([lon, lat]) => ({
            gcj: TiplineDatum.fromWgs84(lon, lat, 'gcj02'),
            bd: TiplineDatum.fromWgs84(lon, lat, 'bd09'),
            back_gcj: TiplineDatum.toWgs84(...TiplineDatum.fromWgs84(lon, lat, 'gcj02'), 'gcj02'),
            back_bd: TiplineDatum.toWgs84(...TiplineDatum.fromWgs84(lon, lat, 'bd09'), 'bd09'),
            same: TiplineDatum.fromWgs84(lon, lat, 'wgs84'),
        }))""",
        [list(p) for p in DATUM_POINTS],
    )
    for (lon, lat), got in zip(DATUM_POINTS, js, strict=True):
        expected = {
            "gcj": datum.wgs84_to_gcj02(lon, lat),
            "bd": datum.wgs84_to_bd09(lon, lat),
            "back_gcj": datum.gcj02_to_wgs84(*datum.wgs84_to_gcj02(lon, lat)),
            "back_bd": datum.bd09_to_wgs84(*datum.wgs84_to_bd09(lon, lat)),
            "same": (lon, lat),
        }
        for name, (x, y) in expected.items():
            assert got[name] == pytest.approx([x, y], abs=1e-9), (name, lon, lat)
    context.close()


def test_pin_on_gcj02_tiles_is_converted_back_to_wgs84(browser, app, settings, session_factory):
    """With GCJ-02 tiles the pin is drawn shifted (~470 m); the tip still gets WGS-84."""
    from app import create_app

    gcj_app = create_app(
        settings.with_(map_tile_url="/tiles/{z}/{x}/{y}.png", map_tile_datum="gcj02")
    )
    blank = io.BytesIO()
    Image.new("RGB", (256, 256), (230, 235, 240)).save(blank, "PNG")
    with serve(gcj_app) as running:
        context = new_context(browser)
        context.route(
            "**/tiles/**", lambda r: r.fulfill(body=blank.getvalue(), content_type="image/png")
        )
        page = open_form(context, running)
        fill_tip(page)
        page.locator("#map .leaflet-tile-loaded").first.wait_for()
        page.focus("#map .leaflet-marker-icon")
        page.keyboard.press("ArrowUp")  # one step north, on the GCJ-02 map
        page.locator("#location-status").filter(has_text=t("web.location_moved", "zh")).wait_for()
        submit(page)
        ref = shown_ref(page)
        context.close()
    gcj_app.extensions["tipline"].engine.dispose()

    lat, lon = centre_of("G3")
    glon, glat = datum.wgs84_to_gcj02(lon, lat)
    want_lon, want_lat = datum.gcj02_to_wgs84(glon, glat + 0.0001)
    with session_factory() as s:
        tip = s.scalar(select(Tip).where(Tip.ref == ref))
        assert tip.location_source == "map" and tip.accuracy_m is None
        assert tip.latitude == pytest.approx(want_lat, abs=1e-6)
        assert tip.longitude == pytest.approx(want_lon, abs=1e-6)
        assert tip.grid_path.endswith("/G3")


def test_screenshot_at_390x844(browser, server):
    context = new_context(browser, device_scale_factor=2)
    page = open_form(context, server)
    page.check("#cat-suspicious")
    page.fill("#description", "超市门口有人撬电动车锁，穿灰色外套，往东走了")
    page.locator("#description").blur()
    out = ROOT / "docs" / "screenshots" / "form.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    with Image.open(out) as shot:
        assert shot.size == (780, 1688)
    context.close()
