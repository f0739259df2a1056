"""The intake path every channel calls: validate, clean photos, route, store, acknowledge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from marshmallow import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import insert_unless_exists, reads_before_write, utcnow
from app.errors import DomainError
from app.grids.services import Placement, route_point
from app.identifiers import (
    new_receipt,
    new_tip_ref,
    normalise_receipt,
    normalise_ref,
    receipt_from_key,
)
from app.outbox.services import queue_for_grid_workers
from app.ratelimit import RateLimiter
from app.reports import idempotency
from app.reports.abuse import check_reporter_allowed, check_submission_rate
from app.reports.categories import active_category
from app.reports.clock import start_clock
from app.reports.duplicates import plan_links, text_hash, write_links
from app.reports.errors import InvalidTip, RateLimited, TipNotFound, TooManyPhotos
from app.reports.models import Photo, Tip, TipEvent
from app.reports.photos import ProcessedPhoto, process_photo_bounded
from app.reports.reporter_view import reporter_status, tip_for_reporter
from app.reports.schemas import TipInputSchema
from app.reports.storage import MediaStore
from app.reports.triage import assess_priority, load_urgent_words, reporter_trust
from app.security import keyed_hash
from app.staff.landmarks import place_by_landmark

FUTURE_TOLERANCE = dt.timedelta(minutes=5)
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_schema = TipInputSchema()
tips = Tip.__table__
# Statements are built once: constructing one per call costs more than running it.
_INSERT_PHOTO = insert(Photo.__table__)
_INSERT_EVENT = insert(TipEvent.__table__)


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


def _locate(
    session: Session, data: dict, photos: list[ProcessedPhoto]
) -> tuple[float | None, float | None, str]:
    """Choose the position: the one sent, a photo's GPS, a known landmark named, else none."""
    if "latitude" in data:
        return data["latitude"], data["longitude"], data.get("location_source", "device")
    for p in photos:
        if p.gps is not None:
            return p.gps.latitude, p.gps.longitude, "exif"
    if data.get("address"):
        placed = place_by_landmark(session, data["address"])
        if placed is not None:
            return placed[0], placed[1], "landmark"
        return None, None, "address"
    return None, None, "none"


def _flags_and_placement(
    session: Session, settings: Settings, data: dict, lat, lon, now: dt.datetime
) -> tuple[list[str], Placement]:
    """Route the point, flagging what staff must check; odd input is kept, never dropped."""
    flags: list[str] = []
    if lat is not None and abs(lat) < 1e-6 and abs(lon) < 1e-6:
        flags.append("null_island")  # a phone's "no fix" default, not a place
        lat = lon = None
    if data.get("occurred_at") and data["occurred_at"] > now + FUTURE_TOLERANCE:
        flags.append("future_time")
    placement = route_point(
        session,
        lat,
        lon,
        data.get("accuracy_m"),
        nearest_m=settings.nearest_grid_m,
        max_accuracy_m=settings.max_accuracy_m,
    )
    if placement.reason in ("outside_area", "low_accuracy"):
        flags.append(placement.reason)
    if not placement.routed:
        flags.append("needs_location")
    return flags, placement


def _insert_tip(conn: Connection, values: dict) -> tuple[int, str]:
    """Insert the tip under a fresh reference, drawing again on the rare clash."""
    for _ in range(8):  # a clash is one in a billion per draw
        ref = new_tip_ref()
        tip_id = insert_unless_exists(conn, tips, {**values, "ref": ref})
        if tip_id is not None:
            return tip_id, ref
    raise RuntimeError("could not draw a free tip reference")


def _photo_rows(tip_id: int, stored: list[tuple[ProcessedPhoto, str, str]]) -> list[dict]:
    """Make the photo rows, keeping the same photo sent twice in one tip only once."""
    rows: list[dict] = []
    seen: set[str] = set()
    for p, derivative_key, thumb_key in stored:
        if p.sha256 in seen:
            continue
        seen.add(p.sha256)
        rows.append(
            {
                "tip_id": tip_id,
                "position": len(rows),
                "sha256": p.sha256,
                "original_format": p.original_format,
                "derivative_key": derivative_key,
                "thumbnail_key": thumb_key,
                "width": p.width,
                "height": p.height,
                "thumb_width": p.thumb_width,
                "thumb_height": p.thumb_height,
                "phash": p.phash,
            }
        )
    return rows


@dataclass(frozen=True)
class _Prepared:
    """A tip worked out before its write transaction: the row's values but its ref and links."""

    values: dict
    stored: list[tuple[ProcessedPhoto, str, str]]
    placement: Placement
    owner: int | None
    receipt: str | None
    latitude: float | None
    longitude: float | None
    located: bool


def _prepare(
    reads: Session,
    settings: Settings,
    store: MediaStore,
    data: dict,
    photos: list[ProcessedPhoto],
    category,
    *,
    owner: int | None,
    anonymous: bool,
    key: str | None,
    channel: str,
    now: dt.datetime,
    check_placement: Callable[[Placement], None] | None = None,
) -> _Prepared:
    """Store the photo files, place, route and triage the tip: all that needs no write.

    `reads` is the session for its reads (app/db.py reads_before_write). An anonymous
    tip is judged as nobody's (`owner` None): its sender stays unlinked.
    """
    lat, lon, source = _locate(reads, data, photos)
    flags, placement = _flags_and_placement(reads, settings, data, lat, lon, now)
    if check_placement is not None:
        check_placement(placement)  # a refusal here leaves no file: none is written yet
    stored = [(p, store.put(p.derivative), store.put(p.thumbnail)) for p in photos]
    if source in ("exif", "landmark"):
        flags.append("location_from_photo" if source == "exif" else "location_from_landmark")
    receipt = None
    if anonymous:
        receipt = receipt_from_key(settings.secret_key, key) if key else new_receipt()
    located = lat is not None and "null_island" not in flags
    assessment = assess_priority(
        category_severity=category.severity,
        text=data["description"],
        received_at=now,
        reporter_trust=None if owner is None else reporter_trust(reads.connection(), owner),
        has_photos=bool(photos),
        accuracy_m=data.get("accuracy_m"),
        location_source=source if located else "none",
        urgent_words=load_urgent_words(reads),
    )
    grid_path = "/".join(p["code"] for p in placement.path) or None
    values = dict(
        reporter_id=owner,
        receipt_hash=keyed_hash(settings.secret_key, "receipt", receipt) if receipt else None,
        channel=channel,
        category_id=category.id,
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
        grid_path=grid_path,
        priority=assessment.priority,
        priority_rank=assessment.rank,
        priority_reasons=assessment.reasons,
        text_hash=text_hash(data["description"]),
        status="new",
        updated_at=now,
        **start_clock(
            reads,
            priority=assessment.priority,
            category_code=category.code,
            grid_path=grid_path,
            received_at=now,
        ),
    )
    return _Prepared(values, stored, placement, owner, receipt, lat, lon, located)


def _key_is_stored(conn: Connection, settings: Settings, scope: str, key: str) -> bool:
    """True when a request with this Idempotency-Key was already stored (a replay)."""
    records = idempotency.records
    key_hash = keyed_hash(settings.secret_key, "idempotency", key)
    found = conn.execute(
        select(records.c.id).where(records.c.scope == scope, records.c.key_hash == key_hash)
    ).first()
    return found is not None


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
    limiter: RateLimiter | None = None,
    client_key: str | None = None,
    check_placement: Callable[[Placement], None] | None = None,
    processed: list[ProcessedPhoto] | None = None,
) -> Submission:
    """Store one tip with its cleaned photos in the caller's transaction and say what to answer.

    Photos are decoded and written (content-addressed) before any row, so the
    transaction stays short; a crash in between leaves only files the sweeper removes.
    Bans and rate limits (app/reports/abuse.py) are checked before any decoding;
    `client_key` identifies an anonymous caller for the limit (a keyed hash, never an IP).
    `check_placement` sees where the tip routes before any file is written, and may raise
    to refuse it (an Open311 partner limited to some grids). `processed`: the uploads
    already cleaned, in their order (the bot decodes before its transaction), used as is.
    """
    now = now or utcnow()
    key = idempotency.check_key(idempotency_key)
    if len(uploads) > settings.max_photos:
        raise TooManyPhotos(
            f"at most {settings.max_photos} photos per tip",
            fields={"photos": [f"at most {settings.max_photos}"]},
        )
    # Everything that needs no write is settled before the write transaction begins: on a
    # SQLite file that transaction holds the one writer lock every worker queues for, so
    # the reads (bans, cache misses of the category, layer, urgent words and targets) go
    # through a session of their own (app/db.py), photo files are written outside it, and
    # only the duplicate checks and the inserts run inside the lock.
    with reads_before_write(session) as reads:
        # Cheap refusals first. A keyed request may be a replay, which must not count
        # twice: it is only looked at here and counted once its key is claimed below.
        if reporter_id is not None:
            check_reporter_allowed(reads.connection(), reporter_id)
        rate = dict(reporter_id=reporter_id, client_key=client_key)
        scope = idempotency.scope_for(reporter_id)
        try:
            check_submission_rate(limiter, settings, **rate, record=key is None)
        except RateLimited:
            # Over the limit, a retry of a stored request still gets its original answer.
            if key is None or not _key_is_stored(reads.connection(), settings, scope, key):
                raise
        data = validate_fields(fields)
        if not data["description"].strip() and not uploads:
            raise InvalidTip(
                "a tip needs a description or a photo",
                fields={"description": ["describe what happened, or add a photo"]},
            )
        anonymous = data.pop("anonymous") or reporter_id is None
        photos = _process_all(settings, uploads) if processed is None else processed
        category = active_category(reads, data["category"])
        prepared = None
        if category is not None:
            prepared = _prepare(
                reads,
                settings,
                store,
                data,
                photos,
                category,
                owner=None if anonymous else reporter_id,
                anonymous=anonymous,
                key=key,
                channel=channel,
                now=now,
                check_placement=check_placement,
            )
    # The hot path speaks Core on the session's connection: the ORM unit of work cost
    # more than the rest of the request (see bench/bench_intake.py).
    conn = session.connection()
    if key is not None:
        print_ = _request_print({**data, "anonymous": anonymous}, photos, channel)
        earlier = idempotency.claim_key(conn, settings.secret_key, scope, key, print_)
        if earlier is not None:
            body = dict(earlier.response)
            if body.pop("receipt_from_key", False):
                body["receipt"] = receipt_from_key(settings.secret_key, key)
            return Submission(earlier.status_code, body, True, body["ref"])
        check_submission_rate(limiter, settings, **rate)
    if prepared is None:
        raise InvalidTip("unknown category", fields={"category": ["not an active category"]})
    p = prepared
    links = plan_links(
        conn,
        settings,
        category_id=category.id,
        reporter_id=p.owner,
        latitude=p.latitude if p.located else None,
        longitude=p.longitude if p.located else None,
        received_at=now,
        text_digest=p.values["text_hash"],
        phashes=[ph.phash for ph in photos],
    )
    flags = p.values["flags"] + links.flags
    placement, priority, receipt = p.placement, p.values["priority"], p.receipt
    tip_id, ref = _insert_tip(conn, {**p.values, "flags": flags, "incident_id": links.incident_id})
    photo_rows = _photo_rows(tip_id, p.stored)
    if photo_rows:
        conn.execute(_INSERT_PHOTO, photo_rows)
    write_links(conn, tip_id, now, links)
    conn.execute(
        _INSERT_EVENT,
        dict(
            tip_id=tip_id,
            at=now,
            actor_kind="reporter" if reporter_id else "system",
            actor_id=None if anonymous else reporter_id,
            action="submitted",
            to_status="new",
            data={"channel": channel, "routing": placement.reason, "flags": flags},
        ),
    )
    if placement.routed:
        queue_for_grid_workers(
            session,
            placement.code,
            template="staff_new_tip",
            tip_id=tip_id,
            dedupe_prefix=f"new_tip:{tip_id}:",
            params={
                "ref": ref,
                "category": category.code,
                "priority": priority,
                "grid": placement.code,
            },
        )
    body = {
        "ref": ref,
        "status": reporter_status("new"),
        "priority": priority,
        "grid": placement.grid_json(),
        "photos": [{"width": r["width"], "height": r["height"]} for r in photo_rows],
        "flags": flags,
    }
    if key is not None:
        stored_body = dict(body)
        if receipt:  # the receipt is re-derived on replay, never stored
            stored_body["receipt_from_key"] = True
        idempotency.complete_key(
            conn,
            settings.secret_key,
            scope,
            key,
            status_code=201,
            response=stored_body,
            tip_id=tip_id,
        )
    if receipt:
        body["receipt"] = receipt
    return Submission(201, body, False, ref)


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
