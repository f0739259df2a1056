"""Open311 GeoReport v2 endpoints under /open311/v2, in JSON and XML.

Deliberate deviation from the spec: every method needs an api_key (form
field, query parameter or X-Api-Key header), because informant tips are not
public; each partner sees only its own requests. Photos are never returned;
a `media_url` sent with a request is not fetched (upload a `media` file).
Each key has its own rate limit for POSTs (Settings.partner_tips_per_minute):
past it, 429 with Retry-After in the spec's error envelope.
"""

from __future__ import annotations

import re

from flask import Blueprint, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from app.db import unit_of_work, utcnow
from app.errors import DomainError, NotFound
from app.i18n import normalise_locale, t
from app.open311.filters import parse_filter
from app.open311.render import error_body, respond
from app.open311.services import (
    BadRequest,
    file_request,
    find_requests,
    get_request,
    list_services,
    request_for_token,
    service_definition,
)
from app.partners.keys import authenticate_partner, needs_touch, touch_partner
from app.reports.services import Upload
from app.webapp import db, services

bp = Blueprint("open311", __name__, url_prefix="/open311/v2")

FMT = "<any(json, xml):fmt>"
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-01-01T00:00:00+08:00"
POST_FIELDS = (
    "service_code",
    "lat",
    "long",
    "address_string",
    "address_id",
    "description",
    "email",
    "device_id",
    "account_id",
    "first_name",
    "last_name",
    "phone",
)
_ATTRIBUTE = re.compile(r"attribute\[([A-Za-z0-9_.-]{1,64})\](?:\[\])?")
# Statuses kept as they are; any other refusal is the spec's 400.
_KEPT_STATUSES = frozenset({403, 404, 405, 413, 429})


class Forbidden(DomainError):
    """No key, an unknown key or a revoked one."""

    code = "forbidden"
    status = 403


def _fmt() -> str:
    """The format the URL asked for (errors before routing: by the path's suffix)."""
    fmt = (request.view_args or {}).get("fmt")
    return fmt or ("xml" if request.path.endswith(".xml") else "json")


def _locale() -> str:
    """`locale` parameter, else Accept-Language; Chinese by default."""
    chosen = request.args.get("locale")
    if not chosen and request.accept_languages:
        chosen = request.accept_languages.best
    return normalise_locale(chosen)


def _partner():
    """Authenticate the api_key; refuse with 403 in the spec's envelope otherwise."""
    raw = request.headers.get("X-Api-Key") or request.args.get("api_key")
    if raw is None and request.method == "POST":
        raw = request.form.get("api_key")
    svc = services()
    session = db()
    writing = request.method == "POST"
    partner = authenticate_partner(session, svc.settings, raw, touch=writing)
    if partner is None:
        raise Forbidden(t("open311.error.api_key", _locale()))
    if not writing and needs_touch(partner):
        # A read transaction must not turn into a write: record the use in its own one.
        with unit_of_work(svc.sessions) as write:
            touch_partner(write, partner.id)
    return partner


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError):
    status = exc.status if exc.status in _KEPT_STATUSES or exc.status >= 500 else 400
    resp = respond(_fmt(), "errors", error_body(status, exc.message, exc.fields), status)
    if exc.retry_after is not None:
        resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    code = exc.code or 400
    status = code if code in _KEPT_STATUSES or code >= 500 else 400
    return respond(_fmt(), "errors", error_body(status, exc.description or exc.name), status)


@bp.route(f"/discovery.{FMT}")
def discovery(fmt: str):
    """The service discovery document (spec: Service Discovery)."""
    _partner()
    locale = _locale()
    body = {
        "changeset": CHANGESET,
        "contact": t("open311.discovery.contact", locale),
        "key_service": t("open311.discovery.key_service", locale),
        "notes": t("open311.discovery.notes", locale),
        "endpoints": [
            {
                "specification": SPEC_URL,
                "url": request.url_root.rstrip("/") + bp.url_prefix,
                "changeset": CHANGESET,
                "type": "production",
                "formats": ["application/json", "text/xml"],
            }
        ],
    }
    return respond(fmt, "discovery", body)


@bp.route(f"/services.{FMT}")
def services_list(fmt: str):
    """GET Service List: one service per tip category."""
    _partner()
    return respond(fmt, "services", list_services(db(), _locale()))


@bp.route(f"/services/<code>.{FMT}")
def service_def(code: str, fmt: str):
    """GET Service Definition: the category's extra questions."""
    _partner()
    return respond(fmt, "service_definition", service_definition(db(), code, _locale()))


def _uploads(max_bytes: int) -> list[Upload]:
    """Read `media` files (the common multipart extension); no other file field is taken."""
    if set(request.files) - {"media"}:
        raise BadRequest("photos go in the 'media' field", fields={"media": "only field for files"})
    uploads = []
    for storage in request.files.getlist("media"):
        data = storage.stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise RequestEntityTooLarge(f"each photo may be at most {max_bytes // 2**20} MB")
        uploads.append(Upload(data=data, name=storage.filename or ""))
    return uploads


@bp.route(f"/requests.{FMT}", methods=["POST"])
def create_request(fmt: str):
    """POST Service Request: file a tip; answer with its id, notice and token."""
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise BadRequest(t("open311.error.body_type", _locale()))
    partner = _partner()
    svc = services()
    form = request.form
    answers: dict[str, list[str]] = {}
    for key in form:
        match = _ATTRIBUTE.fullmatch(key)
        if match:
            answers.setdefault(match.group(1), []).extend(form.getlist(key))
        elif key.startswith("attribute"):
            raise BadRequest("attributes are sent as attribute[CODE]", fields={key: "malformed"})
    locale = normalise_locale(form.get("locale")) if form.get("locale") else _locale()
    body = file_request(
        db(),
        svc.settings,
        svc.store,
        partner,
        form={name: form.get(name) for name in POST_FIELDS if form.get(name) is not None},
        answers=answers,
        uploads=_uploads(svc.settings.max_photo_bytes),
        idempotency_key=request.headers.get("Idempotency-Key"),
        limiter=svc.limiter,
        locale=locale,
    )
    return respond(fmt, "service_requests", [body], 201)


@bp.route(f"/requests.{FMT}", methods=["GET"])
def list_requests(fmt: str):
    """GET Service Requests: the partner's own, filtered as the spec says, newest first."""
    partner = _partner()
    locale = _locale()
    query = parse_filter(request.args, locale, utcnow())
    return respond(fmt, "service_requests", find_requests(db(), partner, query, locale))


@bp.route(f"/requests/<rid>.{FMT}")
def one_request(rid: str, fmt: str):
    """GET Service Request: one of the partner's own; anyone else's is not found."""
    partner = _partner()
    return respond(fmt, "service_requests", [get_request(db(), partner, rid, _locale())])


@bp.route(f"/tokens/<token>.{FMT}")
def token(token: str, fmt: str):
    """GET service_request_id from a token."""
    partner = _partner()
    return respond(fmt, "service_requests", [request_for_token(db(), partner, token, _locale())])


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str):
    """Anything else under /open311/v2 is not found, in the spec's envelope."""
    raise NotFound(t("open311.error.not_found", _locale()))
