"""The intake path every channel calls: validate, clean photos, route, store, acknowledge."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.errors import DomainError
from app.grids.services import Placement, route_point
from app.identifiers import (
    new_receipt,
    new_tip_ref,
    normalise_receipt,
    normalise_ref,
    receipt_from_key,
)
from app.outbox.services import queue_message
from app.people.models import StaffScope, StaffUser
from app.reports import idempotency
from app.reports.errors import InvalidTip, TipNotFound, TooManyPhotos
from app.reports.models import Category, Photo, Tip, TipEvent
from app.reports.photos import ProcessedPhoto, process_photo_bounded
from app.reports.reporter_view import reporter_status, tip_for_reporter
from app.reports.schemas import TipInputSchema
from app.reports.storage import MediaStore
from app.security import keyed_hash

PRIORITY_BY_SEVERITY = {4: "urgent", 3: "high", 2: "normal", 1: "low"}
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_schema = TipInputSchema()


@dataclass(frozen=True)
class Upload:
    """A photo as received: its bytes and the client's name (echoed in errors, never stored)."""

    data: bytes
    name: str = ""


@dataclass(frozen=True)
class Submission:
    """The outcome of submit_tip: what to answer, and whether it is a replay."""

    status_code: int
    body: dict
    replayed: bool
    ref: str


def _safe_name(name: str) -> str:
    """Shorten a client filename and drop control and bidi characters before echoing it."""
    cleaned = "".join(c for c in name if c.isprintable() and c not in _BIDI_CONTROLS)
    return cleaned[:60]


def validate_fields(raw: dict) -> dict:
    """Validate a tip's fields with the schema, or raise InvalidTip with field errors."""
    try:
        return _schema.load(raw)
    except ValidationError as exc:
        raise InvalidTip("some fields are not valid", fields=exc.normalized_messages()) from None


def _process_all(settings: Settings, uploads: list[Upload]) -> list[ProcessedPhoto]:
    """Clean every photo, naming the one that failed so the client can resend without it."""
    done = []
    for i, up in enumerate(uploads):
        try:
            done.append(
                process_photo_bounded(
                    up.data, timeout=settings.decode_wait_seconds, max_pixels=settings.max_pixels
                )
            )
        except DomainError as exc:
            if exc.status >= 500:
                raise
            label = f"photo {i + 1}" + (f" ({_safe_name(up.name)})" if up.name else "")
            raise type(exc)(
                f"{label}: {exc.message}", fields={"photos": {str(i): [exc.message]}}, code=exc.code
            ) from None
    return done


def _request_print(data: dict, photos: list[ProcessedPhoto], channel: str) -> str:
    """Fingerprint the validated request, photos by the hash of their original bytes."""
    return idempotency.fingerprint(
        {"fields": data, "photos": [p.sha256 for p in photos], "channel": channel}
    )


def _locate(data: dict, photos: list[ProcessedPhoto]) -> tuple[float | None, float | None, str]:
    """Choose the tip's position: the one sent, else a photo's GPS as a hint, else none."""
    if "latitude" in data:
        return data["latitude"], data["longitude"], data.get("location_source", "device")
    for p in photos:
        if p.gps is not None:
            return p.gps.latitude, p.gps.longitude, "exif"
    return None, None, "address" if data.get("address") else "none"


def _flags_and_placement(
    session: Session, settings: Settings, data: dict, lat, lon, now: dt.datetime
) -> tuple[list[str], Placement]:
    """Route the point, flagging what staff must check; odd input is kept, never dropped."""
    flags: list[str] = []
    accuracy = data.get("accuracy_m")
    routable = lat is not None
    if routable and abs(lat) < 1e-6 and abs(lon) < 1e-6:
        flags.append("null_island")
        routable = False
    if routable and accuracy is not None and accuracy > settings.max_accuracy_m:
        flags.append("low_accuracy")
        routable = False
    if data.get("occurred_at") and data["occurred_at"] > now + FUTURE_TOLERANCE:
        flags.append("future_time")
    if routable:
        placement = route_point(session, lat, lon, accuracy, nearest_m=settings.nearest_grid_m)
    else:
        placement = route_point(session, None, None, None)
    if placement.reason == "outside_area":
        flags.append("outside_area")
    if placement.grid_id is None:
        flags.append("needs_location")
    return flags, placement


def _unique_ref(session: Session) -> str:
    """Draw references until one is free (a clash is one in a billion per draw)."""
    while True:
        ref = new_tip_ref()
        if session.scalar(select(Tip.id).where(Tip.ref == ref)) is None:
            return ref


def _notify_grid_staff(session: Session, tip: Tip, placement: Placement, category: Category):
    """Queue a message to each active grid worker of the tip's grid."""
    if placement.grid_id is None:
        return
    staff_ids = session.scalars(
        select(StaffUser.id)
        .join(StaffScope)
        .where(
            StaffScope.grid_code == placement.code,
            StaffUser.role == "grid_worker",
            StaffUser.active.is_(True),
        )
    ).all()
    for staff_id in staff_ids:
        queue_message(
            session,
            recipient_kind="staff",
            recipient_id=staff_id,
            template="staff_new_tip",
            tip_id=tip.id,
            params={
                "ref": tip.ref,
                "category": category.code,
                "priority": tip.priority,
                "grid": placement.code,
            },
            dedupe_key=f"new_tip:{tip.id}:{staff_id}",
        )


def _grid_body(placement: Placement) -> dict | None:
    """The grid as the reporter sees it."""
    if placement.grid_id is None:
        return None
    return {"code": placement.code, "name": placement.name, "path": placement.path}


def submit_tip(
    session: Session,
    settings: Settings,
    store: MediaStore,
    *,
    fields: dict,
    uploads: list[Upload],
    channel: str,
    reporter_id: int | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> Submission:
    """Store one tip with its cleaned photos in the caller's transaction and say what to answer.

    Photos are decoded and written (content-addressed) before any row, so the
    transaction stays short; a crash in between leaves only files the sweeper removes.
    """
    now = now or utcnow()
    key = idempotency.check_key(idempotency_key)
    if len(uploads) > settings.max_photos:
        raise TooManyPhotos(
            f"at most {settings.max_photos} photos per tip",
            fields={"photos": [f"at most {settings.max_photos}"]},
        )
    data = validate_fields(fields)
    if not data["description"].strip() and not uploads:
        raise InvalidTip(
            "a tip needs a description or a photo",
            fields={"description": ["describe what happened, or add a photo"]},
        )
    anonymous = data.pop("anonymous") or reporter_id is None
    photos = _process_all(settings, uploads)
    scope = idempotency.scope_for(reporter_id)
    if key is not None:
        earlier = idempotency.claim_key(
            session,
            settings.secret_key,
            scope,
            key,
            _request_print({**data, "anonymous": anonymous}, photos, channel),
        )
        if earlier is not None:
            body = dict(earlier.response)
            if "receipt_from_key" in body:
                body.pop("receipt_from_key")
                body["receipt"] = receipt_from_key(settings.secret_key, key)
            return Submission(earlier.status_code, body, True, body["ref"])
    category = session.scalar(
        select(Category).where(Category.code == data["category"], Category.active.is_(True))
    )
    if category is None:
        raise InvalidTip("unknown category", fields={"category": ["not an active category"]})

    stored = [(p, store.put(p.derivative), store.put(p.thumbnail)) for p in photos]
    lat, lon, source = _locate(data, photos)
    flags, placement = _flags_and_placement(session, settings, data, lat, lon, now)
    if source == "exif":
        flags.append("location_from_photo")
    receipt = None
    if anonymous:
        receipt = receipt_from_key(settings.secret_key, key) if key else new_receipt()
    tip = Tip(
        ref=_unique_ref(session),
        reporter_id=None if anonymous else reporter_id,
        receipt_hash=keyed_hash(settings.secret_key, "receipt", receipt) if receipt else None,
        channel=channel,
        category=category,
        description=data["description"],
        observed_at=data.get("occurred_at"),
        received_at=now,
        latitude=lat,
        longitude=lon,
        accuracy_m=data.get("accuracy_m"),
        location_source=source,
        address=data.get("address"),
        grid_id=placement.grid_id,
        routing_reason=placement.reason,
        layer_version=placement.layer_version,
        neighbour_grids=placement.neighbours or None,
        flags=flags,
        priority=PRIORITY_BY_SEVERITY.get(category.severity, "normal"),
        status="new",
    )
    seen: set[str] = set()
    for p, derivative_key, thumb_key in stored:
        if p.sha256 in seen:  # the same photo twice in one tip is kept once
            continue
        seen.add(p.sha256)
        tip.photos.append(
            Photo(
                position=len(tip.photos),
                sha256=p.sha256,
                original_format=p.original_format,
                derivative_key=derivative_key,
                thumbnail_key=thumb_key,
                width=p.width,
                height=p.height,
                thumb_width=p.thumb_width,
                thumb_height=p.thumb_height,
                phash=p.phash,
            )
        )
    session.add(tip)
    session.flush()
    session.add(
        TipEvent(
            tip_id=tip.id,
            at=now,
            actor_kind="reporter" if reporter_id else "system",
            actor_id=None if anonymous else reporter_id,
            action="submitted",
            to_status="new",
            data={"channel": channel, "routing": placement.reason, "flags": flags},
        )
    )
    _notify_grid_staff(session, tip, placement, category)
    body = {
        "ref": tip.ref,
        "status": reporter_status(tip.status),
        "priority": tip.priority,
        "grid": _grid_body(placement),
        "photos": [{"width": ph.width, "height": ph.height} for ph in tip.photos],
        "flags": flags,
    }
    if key is not None:
        stored_body = dict(body)
        if receipt:  # the receipt is re-derived on replay, never stored
            stored_body["receipt_from_key"] = True
        idempotency.complete_key(
            session,
            settings.secret_key,
            scope,
            key,
            status_code=201,
            response=stored_body,
            tip_id=tip.id,
        )
    if receipt:
        body["receipt"] = receipt
    return Submission(201, body, False, tip.ref)


def view_tip(
    session: Session,
    settings: Settings,
    ref: str,
    *,
    reporter_id: int | None = None,
    receipt: str | None = None,
) -> dict:
    """Return the reporter's view of a tip, to its owner or the holder of its receipt only."""
    canonical = normalise_ref(ref or "")
    tip = None
    if canonical:
        tip = session.scalar(select(Tip).where(Tip.ref == canonical))
    if tip is not None and reporter_id is not None and tip.reporter_id == reporter_id:
        return tip_for_reporter(tip)
    digits = normalise_receipt(receipt or "")
    if (
        tip is not None
        and digits
        and tip.receipt_hash == keyed_hash(settings.secret_key, "receipt", digits)
    ):
        return tip_for_reporter(tip)
    raise TipNotFound("no such tip")
