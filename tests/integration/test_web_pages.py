"""The form's pages, manifest, icons and service worker, through the Flask test client."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser

import pytest
from PIL import Image
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from app.i18n import catalogue, t
from app.reports.categories import DEFAULT_CATEGORIES
from tests.images import marked_image


class _Page(HTMLParser):
    """Collect what matters for the CSP and the assets: scripts, styles, links, images."""

    def __init__(self):
        super().__init__()
        self.inline_scripts = 0
        self.style_blocks = 0
        self.style_attributes = 0
        self.handler_attributes = 0
        self.urls: list[str] = []
        self.data: dict[str, str] = {}
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            if "src" in attrs:
                self.urls.append(attrs["src"])
            else:
                self.inline_scripts += 1
        if tag == "style":
            self.style_blocks += 1
        if "style" in attrs:
            self.style_attributes += 1
        self.handler_attributes += sum(1 for name in attrs if name.startswith("on"))
        if tag == "link" and "href" in attrs:
            self.urls.append(attrs["href"])
        if tag == "img" and "src" in attrs:
            self.urls.append(attrs["src"])
        if tag == "body":
            self.data = {k: v for k, v in attrs.items() if k.startswith("data-")}


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_form_is_chinese_by_default_with_every_category(client):
    resp = client.get("/report")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert '<html lang="zh-CN">' in html
    assert t("web.report_title", "zh") in html
    for code, zh, _en, *_ in DEFAULT_CATEGORIES:
        assert f'value="{code}"' in html and zh in html
    assert 'capture="environment"' in html, "the camera button opens the camera"


def test_english_switch_is_remembered(client):
    html = client.get("/report?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in html and "Report a tip" in html and "Theft" in html
    again = client.get("/report").get_data(as_text=True)
    assert '<html lang="en">' in again, "the choice is kept in a cookie"
    back = client.get("/report?lang=zh").get_data(as_text=True)
    assert '<html lang="zh-CN">' in back


@pytest.mark.parametrize("path", ["/report", "/report?lang=en", "/status"])
def test_pages_hold_under_a_strict_csp_and_every_asset_exists(client, path):
    resp = client.get(path)
    page = parse(resp.get_data(as_text=True))
    assert page.inline_scripts == 0
    assert page.style_blocks == 0 and page.style_attributes == 0
    assert page.handler_attributes == 0
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for url in page.urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        asset.close()


def test_scripts_get_every_text_of_the_catalogue_in_one_language(client):
    page = parse(client.get("/report?lang=en").get_data(as_text=True))
    messages = json.loads(page.data["data-messages"])
    web_keys = {k for k in catalogue() if k.startswith("web.")}
    assert web_keys <= set(messages)
    assert messages["web.submit"] == "Send"
    assert messages["status.in_handling"] == t("status.in_handling", "en")


def test_every_form_text_is_in_chinese_and_english():
    for key, texts in catalogue().items():
        if key.startswith("web."):
            assert texts.get("zh") and texts.get("en"), key
            params_zh = set(re.findall(r"{(\w+)}", texts["zh"]))
            assert params_zh == set(re.findall(r"{(\w+)}", texts["en"])), key


def test_manifest_makes_the_form_installable(client):
    resp = client.get("/report/manifest.webmanifest")
    assert resp.mimetype == "application/manifest+json"
    manifest = resp.get_json(force=True)
    assert manifest["start_url"] == "/report" and manifest["display"] == "standalone"
    assert manifest["name"] == t("web.app_name", "zh")
    sizes = set()
    for icon in manifest["icons"]:
        png = client.get(icon["src"])
        with Image.open(io.BytesIO(png.data)) as im:
            assert im.format == "PNG"
            assert f"{im.width}x{im.height}" == icon["sizes"]
        sizes.add(icon["sizes"])
        png.close()
    assert {"192x192", "512x512"} <= sizes
    assert any(i.get("purpose") == "maskable" for i in manifest["icons"])


def test_service_worker_caches_a_shell_that_exists(client):
    resp = client.get("/sw.js")
    assert resp.mimetype == "text/javascript"
    assert resp.headers["Cache-Control"] == "no-cache"
    js = resp.get_data(as_text=True)
    shell = json.loads(re.search(r"const SHELL = (\[.*?\]);", js).group(1))
    assert "/report" in shell and "/status" in shell
    assert any("leaflet.js" in url for url in shell)
    for url in shell:
        asset = client.get(url)
        assert asset.status_code == 200, url
        asset.close()
    # Versioned URLs in the page are exactly the ones the worker keeps.
    page = parse(client.get("/report").get_data(as_text=True))
    assert {u for u in page.urls if "/web/static/" in u} <= set(shell)


def test_form_uploads_of_real_photo_size_are_accepted(client):
    """Three grainy 2016 px JPEGs (what the form sends) must not hit the form-field limit.

    Werkzeug checks MAX_FORM_MEMORY_SIZE against each raw 64 KiB read plus its unparsed
    tail, files included: at 64 KiB, 6 in 10 photos like these were refused with 413.
    """
    photos = []
    for _ in range(3):
        grain = Image.effect_noise((2016, 1512), 40).convert("RGB")
        buf = io.BytesIO()
        Image.blend(marked_image(2016, 1512), grain, 0.2).save(buf, "JPEG", quality=60)
        photos.append(buf.getvalue())
    fields = MultiDict([("category", "theft")])
    for n, data in enumerate(photos):
        fields.add("photos", FileStorage(io.BytesIO(data), filename=f"{n}.jpg"))
    boundary, body = encode_multipart(fields)  # in memory: no temp file left open
    resp = client.post(
        "/api/v1/tips", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["photos"] == [{"width": 2016, "height": 1512}] * 3
