"""Pages of the mobile form; the form itself talks to the JSON API (/api/v1/tips)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, make_response, render_template, request, url_for
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from app.errors import DomainError
from app.grids.datum import CRS_NAMES, CRS_WGS84
from app.i18n import catalogue, normalise_locale, t
from app.reports.categories import list_categories
from app.reports.errors import TipNotFound
from app.reports.services import view_tip
from app.reports.triage import LOCAL_TZ
from app.security import keyed_hash
from app.web import assets
from app.webapp import db, services

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/web/static",
)

LANG_COOKIE = "tipline_web_lang"
LANG_COOKIE_AGE = 365 * 24 * 3600
# Look-ups per client address per window: plenty for a person, useless for guessing receipts.
STATUS_LIMIT = 10
STATUS_WINDOW_S = 60
# Texts the scripts need, handed over in a data attribute (no inline script under the CSP).
_CLIENT_PREFIXES = ("web.", "status.")


class StatusLookupSchema(Schema):
    """A reference and a receipt, as typed; their format is judged by the service."""

    class Meta:
        unknown = EXCLUDE  # the language switch and browser extras may ride along

    ref = fields.String(load_default="", validate=validate.Length(max=40))
    receipt = fields.String(load_default="", validate=validate.Length(max=40))


_status_schema = StatusLookupSchema()


def page_locale() -> str:
    """Chinese unless the visitor chose English (?lang=en, remembered in a cookie)."""
    return normalise_locale(request.args.get("lang") or request.cookies.get(LANG_COOKIE))


def client_messages(locale: str) -> dict[str, str]:
    """Every text the form's scripts show, in one language."""
    return {key: t(key, locale) for key in catalogue() if key.startswith(_CLIENT_PREFIXES)}


def tile_config() -> dict:
    """The map tiles the form shows: none by default, else a URL template and its datum."""
    settings = services().settings
    datum = settings.map_tile_datum if settings.map_tile_datum in CRS_NAMES else CRS_WGS84
    return {"url": settings.map_tile_url or "", "datum": datum}


def _render(template: str, locale: str, status: int = 200, **context):
    """Render a page with the catalogue bound to the locale, and remember a language switch."""

    def tr(key: str, **params) -> str:
        return t(key, locale, **params)

    response = make_response(
        render_template(
            template,
            locale=locale,
            tr=tr,
            web_url=assets.web_url,
            leaflet_url=assets.leaflet_url,
            **context,
        ),
        status,
    )
    if request.args.get("lang"):
        response.set_cookie(
            LANG_COOKIE, locale, max_age=LANG_COOKIE_AGE, samesite="Lax", secure=request.is_secure
        )
    response.headers["Content-Language"] = "zh-CN" if locale == "zh" else "en"
    return response


@bp.errorhandler(DomainError)
def domain_error(exc: DomainError):
    """A refusal the pages do not handle themselves (the database away): a page, not JSON."""
    locale = page_locale()
    kind = "unavailable" if exc.status == 503 else "other"
    response = _render(
        "web/error.html",
        locale,
        exc.status,
        title=t(f"web.error_{kind}_title", locale),
        message=t(f"web.error_{kind}", locale, seconds=exc.retry_after or 5),
    )
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/report", methods=["GET"])
def report():
    """The form: categories as buttons, text, photos, location, and the outbox of this phone."""
    locale = page_locale()
    settings = services().settings
    categories = [
        {"code": c.code, "name": c.name_en if locale == "en" else c.name_zh}
        for c in list_categories(db())
    ]
    response = _render(
        "web/report.html",
        locale,
        categories=categories,
        messages=client_messages(locale),
        tiles=tile_config(),
        max_photos=settings.max_photos,
    )
    # The worker keeps its own copy for offline use; the browser must always ask again.
    response.headers["Cache-Control"] = "no-cache"
    return response


def _client_key() -> str:
    """Key the look-up limit by a keyed hash of the address: the address itself is never kept."""
    secret = services().settings.secret_key
    return "web-status:" + keyed_hash(secret, "status-client", request.remote_addr or "")


@bp.route("/status", methods=["GET", "POST"])
def status():
    """Follow up a tip with its reference and receipt; a wrong receipt looks like no tip."""
    locale = page_locale()
    if request.method == "GET":
        ref = request.args.get("ref", "")[:40]
        response = _render("web/status.html", locale, ref=ref)
        response.headers["Cache-Control"] = "no-cache"
        return response
    try:
        form = _status_schema.load(request.form)
    except ValidationError:  # an overlong value cannot be a reference or a receipt
        form = {"ref": "", "receipt": ""}
    ref = form["ref"]
    decision = services().limiter.hit(_client_key(), STATUS_LIMIT, STATUS_WINDOW_S)
    if not decision.allowed:
        response = _render(
            "web/status.html",
            locale,
            429,
            ref=ref,
            error=t("web.status_rate_limited", locale, seconds=decision.retry_after),
        )
        response.headers["Retry-After"] = str(decision.retry_after)
    else:
        try:
            tip = view_tip(db(), services().settings, ref, receipt=form["receipt"])
        except TipNotFound:
            response = _render(
                "web/status.html", locale, 404, ref=ref, error=t("web.status_not_found", locale)
            )
        else:
            received = dt.datetime.fromisoformat(tip["received_at"]).astimezone(LOCAL_TZ)
            response = _render(
                "web/status.html",
                locale,
                ref=tip["ref"],
                tip=tip,
                received=received.strftime("%Y-%m-%d %H:%M"),
            )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/report/manifest.webmanifest", methods=["GET"])
def manifest():
    """The web app manifest, so the form installs to the home screen."""
    locale = page_locale()
    icon = assets.web_url
    body = {
        "name": t("web.app_name", locale),
        "short_name": t("web.app_name", locale),
        "description": t("web.app_description", locale),
        "lang": "zh-CN" if locale == "zh" else "en",
        "start_url": url_for("web.report"),
        "scope": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#0b5394",
        "icons": [
            {"src": icon("icons/icon-192.png"), "sizes": "192x192", "type": "image/png"},
            {"src": icon("icons/icon-512.png"), "sizes": "512x512", "type": "image/png"},
            {
                "src": icon("icons/maskable-512.png"),
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            },
        ],
    }
    response = make_response(body)
    response.mimetype = "application/manifest+json"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/sw.js", methods=["GET"])
def service_worker():
    """The service worker, at the root so its scope covers /report and /status."""
    response = make_response(
        render_template(
            "web/sw.js",
            version=assets.version(),
            shell=assets.shell_urls(),
            outbox_url=assets.web_url("outbox.js"),
        )
    )
    response.mimetype = "text/javascript"
    response.headers["Cache-Control"] = "no-cache"
    return response
