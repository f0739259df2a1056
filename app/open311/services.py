"""Open311 for partners: service definitions, filing a request, and a partner's own requests.

A request is a tip filed through app.reports.services.submit_tip like any
other (routed, triaged, points-bearing); PartnerRequest remembers the partner,
the spec's token and the answers to the category's questions. A partner sees
only its own requests: anyone else's is "not found", never "forbidden".
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, contains_eager

from app.config import Settings
from app.db import utcnow
from app.errors import DomainError, NotFound
from app.grids.models import Grid
from app.grids.services import Placement
from app.i18n import normalise_locale, t
from app.identifiers import normalise_ref
from app.open311.attributes import describe, questions_for, validate_answers
from app.open311.filters import RequestFilter
from app.partners.identities import reporter_for_request
from app.partners.models import Partner, PartnerRequest
from app.ratelimit import RateLimiter
from app.reports.abuse import count_against
from app.reports.categories import list_categories
from app.reports.clock import LOCAL_TZ
from app.reports.errors import RateLimited
from app.reports.models import Category, Tip
from app.reports.reporter_view import reporter_status
from app.reports.services import Upload, submit_tip
from app.reports.storage import MediaStore

# Spec field names for the intake's own, so field errors name what the partner sent.
SPEC_NAMES = {
    "category": "service_code",
    "latitude": "lat",
    "longitude": "long",
    "address": "address_string",
    "photos": "media",
}


class BadRequest(DomainError):
    """A request the spec calls a 400: missing or invalid fields."""

    code = "bad_request"
    status = 400


def iso(value: dt.datetime | None) -> str | None:
    """Render a datetime as ISO 8601 with the city's offset (+08:00), as the spec asks."""
    return value.astimezone(LOCAL_TZ).isoformat(timespec="seconds") if value else None


def _name(category: Category, locale: str) -> str:
    return category.name_en if normalise_locale(locale) == "en" else category.name_zh


def list_services(session: Session, locale: str) -> list[dict]:
    """Return the spec's service list: one service per active category."""
    return [
        {
            "service_code": c.code,
            "service_name": _name(c, locale),
            "description": t(f"open311.service.{c.code}", locale),
            "metadata": bool(questions_for(c.code)),
            "type": "realtime",
            "keywords": "",
            "group": t(f"open311.group.{c.severity}", locale),
        }
        for c in list_categories(session)
    ]


def _active_category(session: Session, code: str) -> Category | None:
    return session.scalar(select(Category).where(Category.code == code, Category.active.is_(True)))


def service_definition(session: Session, code: str, locale: str) -> dict:
    """Return a service's definition: its extra questions as attributes; 404 if unknown."""
    if _active_category(session, code) is None:
        raise NotFound(t("open311.error.service_code", locale))
    return {"service_code": code, "attributes": describe(code, locale)}


def _path_allowed(path: str | None, prefixes: list[str]) -> bool:
    return bool(path) and any(path == p or path.startswith(p + "/") for p in prefixes)


def _area_check(partner: Partner, locale: str) -> Callable[[Placement], None] | None:
    """Return submit_tip's check that the tip routes into the partner's grids, or None.

    submit_tip calls it with the placement it stores (the point sent, else a photo's
    GPS, else a known landmark), before any photo file is written: one routing, and
    the point checked is the point kept.
    """
    if not partner.grid_paths:
        return None

    def check(placement: Placement) -> None:
        path = "/".join(p["code"] for p in placement.path) or None
        if not _path_allowed(path, partner.grid_paths):
            raise BadRequest(
                t("open311.error.outside_grids", locale),
                fields={"lat": t("open311.error.outside_grids", locale)},
            )

    return check


def _check_key_rate(
    limiter: RateLimiter | None,
    settings: Settings,
    partner_id: int,
    locale: str,
    *,
    record: bool = True,
) -> None:
    """Count one request against the partner key's own budget; 429 with Retry-After when over.

    With record=False it only looks (a keyed request may be a replay, counted once it
    turns out not to be); over the limit a replay waits too, and then gets its original
    answer. A limiter outage lets the request through: a tip is not lost.
    """
    if limiter is None:
        return
    limit = settings.partner_tips_per_minute
    window = (f"tips:partner:{partner_id}:m", limit, 60)
    decision = count_against(limiter, [window], record=record)
    if decision is not None and not decision.allowed:
        message = t(
            "open311.error.rate_limited",
            locale,
            per_minute=limit,
            retry_after=decision.retry_after,
        )
        raise RateLimited(message, retry_after=decision.retry_after)


def _intake_fields(form: dict, locale: str) -> dict:
    """Map the spec's POST fields to submit_tip's; a location or an address is required."""
    code = (form.get("service_code") or "").strip()
    if not code:
        raise BadRequest("service_code is required", fields={"service_code": "required"})
    lat, lon = (form.get("lat") or "").strip(), (form.get("long") or "").strip()
    address = (form.get("address_string") or "").strip() or (form.get("address_id") or "").strip()
    if not (lat or lon) and not address:
        raise BadRequest(t("open311.error.location", locale), fields={"lat": "required"})
    fields = {"category": code, "description": form.get("description") or ""}
    if lat or lon:
        fields.update(latitude=lat, longitude=lon)
    if address:
        fields["address"] = address
    return fields


def _spec_fields(errors: dict) -> dict:
    """Rename intake field errors to the spec's names."""
    return {SPEC_NAMES.get(k, k): v for k, v in errors.items()}


def file_request(
    session: Session,
    settings: Settings,
    store: MediaStore,
    partner: Partner,
    *,
    form: dict,
    answers: dict[str, list[str]],
    uploads: list[Upload],
    idempotency_key: str | None = None,
    limiter: RateLimiter | None = None,
    locale: str = "zh",
    now: dt.datetime | None = None,
) -> dict:
    """File one request as a tip and return the spec's answer (plus the token).

    Refused before anything is committed or any photo file written: over the rate
    limit of the partner's key, bad fields or answers, and (inside submit_tip, on the
    placement it stores) a point outside the partner's grids. The webhook event
    "request.created" is queued in the same transaction.

    Limits: the key has its own, `partner_tips_per_minute`. A person the partner
    names is a reporter and has a reporter's limit besides; the key's own reporter
    (nobody named) has only the key's, or a platform would be held to one person's.
    """
    from app.partners.webhooks import queue_tip_event

    now = now or utcnow()
    # A keyed request may be a replay, which must not count: it is only looked at now.
    keyed = idempotency_key is not None
    _check_key_rate(limiter, settings, partner.id, locale, record=not keyed)
    fields = _intake_fields(form, locale)
    try:
        if _active_category(session, fields["category"]) is None:
            raise BadRequest(
                t("open311.error.service_code", locale),
                fields={"service_code": t("open311.error.service_code", locale)},
            )
        kept = validate_answers(fields["category"], answers)
        reporter_id = reporter_for_request(session, settings, partner, form)
        result = submit_tip(
            session,
            settings,
            store,
            fields=fields,
            uploads=uploads,
            channel="open311",
            reporter_id=reporter_id,
            idempotency_key=idempotency_key,
            now=now,
            limiter=limiter if reporter_id != partner.reporter_id else None,
            check_placement=_area_check(partner, locale),
        )
        if keyed and not result.replayed:
            # Counted now that it is new; over the limit, the transaction is rolled back.
            _check_key_rate(limiter, settings, partner.id, locale)
    except DomainError as exc:
        if exc.fields:
            exc.fields = _spec_fields(exc.fields)
        raise
    if result.replayed:
        row = session.execute(
            select(PartnerRequest.token)
            .join(Tip, Tip.id == PartnerRequest.tip_id)
            .where(Tip.ref == result.ref, PartnerRequest.partner_id == partner.id)
        ).first()
        if row is None:  # a key first used on another channel by the same reporter
            raise NotFound(t("open311.error.not_found", locale))
        token = row.token
    else:
        tip_id = session.scalar(select(Tip.id).where(Tip.ref == result.ref))
        token = secrets.token_urlsafe(24)
        session.add(
            PartnerRequest(
                partner_id=partner.id,
                tip_id=tip_id,
                token=token,
                service_code=fields["category"],
                attributes=kept or None,
                created_at=now,
            )
        )
        session.flush()
        queue_tip_event(session, tip_id, "request.created", now=now)
    return {
        "service_request_id": result.ref,
        "service_notice": t("open311.notice", locale),
        "account_id": None,  # a reporter field: never returned
        "token": token,
    }


def _agency(grid: Grid | None, locale: str) -> str:
    """The grid and its police service station, or the duty desk for unrouted tips."""
    if grid is None:
        return t("open311.agency.none", locale)
    return f"{grid.name} · {grid.station}" if grid.station else grid.name


def _expected(tip: Tip) -> dt.datetime | None:
    """From the response clock: the acknowledgement due time, then the resolution one."""
    if not tip.is_open:
        return None
    return tip.ack_due_at if tip.acknowledged_at is None else tip.resolve_due_at


def request_view(tip: Tip, service_code: str, grid: Grid | None, locale: str) -> dict:
    """Render a request as the spec's GET requests shows it; no reporter field, no photo."""
    return {
        "service_request_id": tip.ref,
        "status": "open" if tip.is_open else "closed",
        "status_notes": t(f"open311.status.{reporter_status(tip.status)}", locale),
        "service_name": _name(tip.category, locale),
        "service_code": service_code,
        "description": tip.description,
        "agency_responsible": _agency(grid, locale),
        "service_notice": t("open311.notice", locale),
        "requested_datetime": iso(tip.received_at),
        "updated_datetime": iso(tip.updated_at),
        "expected_datetime": iso(_expected(tip)),
        "address": tip.address,
        "lat": tip.latitude,
        "long": tip.longitude,
    }


def _own_requests(partner_id: int):
    """The partner's requests with their tip, category and grid, newest first."""
    return (
        select(Tip, PartnerRequest.service_code, Grid)
        .join(PartnerRequest, PartnerRequest.tip_id == Tip.id)
        .join(Tip.category)
        .outerjoin(Grid, Grid.id == Tip.grid_id)
        .options(contains_eager(Tip.category))
        .where(PartnerRequest.partner_id == partner_id)
        .order_by(PartnerRequest.created_at.desc(), PartnerRequest.id.desc())
    )


def find_requests(session: Session, partner: Partner, query: RequestFilter, locale: str) -> list:
    """Return the partner's requests matching the spec's filters, one bounded page."""
    stmt = _own_requests(partner.id)
    if query.refs:
        stmt = stmt.where(Tip.ref.in_(query.refs))
    else:
        stmt = stmt.where(
            PartnerRequest.created_at >= query.start, PartnerRequest.created_at <= query.end
        )
        if query.service_codes:
            stmt = stmt.where(PartnerRequest.service_code.in_(query.service_codes))
        if len(query.statuses) == 1:
            stmt = stmt.where(Tip.is_open.is_(query.statuses[0] == "open"))
    stmt = stmt.limit(query.page_size).offset((query.page - 1) * query.page_size)
    return [request_view(tip, code, grid, locale) for tip, code, grid in session.execute(stmt)]


def get_request(session: Session, partner: Partner, ref: str, locale: str) -> dict:
    """Return one of the partner's requests; anyone else's is not found."""
    canonical = normalise_ref(ref or "")
    row = (
        session.execute(_own_requests(partner.id).where(Tip.ref == canonical)).first()
        if canonical
        else None
    )
    if row is None:
        raise NotFound(t("open311.error.not_found", locale))
    return request_view(row[0], row[1], row[2], locale)


def request_for_token(session: Session, partner: Partner, token: str, locale: str) -> dict:
    """Return the service_request_id behind one of the partner's tokens."""
    row = session.execute(
        select(Tip.ref)
        .join(PartnerRequest, PartnerRequest.tip_id == Tip.id)
        .where(PartnerRequest.token == (token or "")[:40], PartnerRequest.partner_id == partner.id)
    ).first()
    if row is None:
        raise NotFound(t("open311.error.not_found", locale))
    return {"service_request_id": row.ref, "token": token}
