"""Duplicates: one incident for tips close in space and time, and links for reused photos and text.

At intake (`plan_links` before the tip row is written, `write_links` right after, in the
same transaction):

- same incident: tips of the same category within `duplicate_radius_m` (150 m) and
  `duplicate_window_minutes` (30 min) join one Incident. The nearest such tip already in
  an incident decides which; when none is, a new incident starts with the earliest tip
  first. Tips already in another incident are linked but never moved (a supervisor may
  have split them on purpose). Tips without a location skip this check.
- similar photo: each new photo's 64-bit pHash against photos of tips from the last
  `photo_window_days`; a Hamming distance of at most `photo_match_bits` (12) is the same
  picture. Measured on synthetic scenes (tests/integration/test_duplicates.py): the same
  scene recompressed, resized or as PNG 0-2 bits, cropped 3 % a side 0-12 (5 %: 4-16,
  not reliably caught); different scenes 18 bits or more (60 scenes, 1,770 pairs). A
  match with another reporter's (or an anonymous) tip flags `photo_reused` (possible
  reward farming); with the same reporter's own tip, `repeat_photo`.
- same text: the description, folded (NFKC, casefold, whitespace, punctuation and
  symbols dropped) and hashed into Tip.text_hash. The third copy within 24 h from one
  reporter, or the third from anyone within 10 min, flags `repeat_text`; the latest
  earlier copies within 24 h are linked (unless already linked as the same incident).

Links (TipLink) are written in both directions, at most LINKS_PER_KIND per kind (the
nearest, then the latest, first), for the admin's duplicate-candidates list. Supervisors
correct the automatic joins with `merge_tips` and `split_tip`.

Cost: the spatial check reads the category's tips of the last 30 min from
ix_tips_dup_window, which covers the position and incident too, and filters them by a
bounding box (one index entry per tip of that category in the window); the text check
is one lookup on ix_tips_text_hash; the photo check compares against every photo of the
window in Python (only for tips with photos, whose decoding costs far more). On
PostgreSQL two tips of one new incident committed at the same instant may each start an
incident: merge fixes it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import (
    ColumnElement,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.grids.index import METRES_PER_DEGREE
from app.refcache import Refreshed
from app.reports.errors import TipNotFound, TipsNotMergeable
from app.reports.models import Incident, Photo, Tip, TipEvent, TipLink
from app.reports.triage import normalise_text

LINKS_PER_KIND = 3
# How many nearby tips one check reads: enough for any real crowd, bounded for a flood
# (a thousand copies of one tip at one spot cost the same as ten).
SCAN_LIMIT = 10
# At most this many of the category's latest tips are looked at, so a flood of tips at
# scattered places cannot make each new tip slower than the last (a riot is still covered).
WINDOW_CAP = 500
REPEAT_TEXT_COUNT = 3
REPEAT_TEXT_BY_REPORTER = dt.timedelta(hours=24)
REPEAT_TEXT_BY_ANYONE = dt.timedelta(minutes=10)
EARTH_RADIUS_M = 6_371_008.8

_tips, _photos, _links, _incidents = (
    Tip.__table__,
    Photo.__table__,
    TipLink.__table__,
    Incident.__table__,
)
# Statements are built once: the checks run on every tip.
# received_at is not read back: parsing SQLite's datetime text cost more than the query.
_WINDOW = (
    select(_tips.c.id, _tips.c.latitude, _tips.c.longitude, _tips.c.incident_id)
    .where(
        _tips.c.category_id == bindparam("category_id"),
        _tips.c.received_at.between(bindparam("since"), bindparam("until")),
    )
    .order_by(_tips.c.received_at.desc())
    .limit(WINDOW_CAP)
    .subquery()
)
# Latest first; both limits stop the scan early (the window is read lazily, newest first).
_NEARBY = (
    select(_WINDOW)
    .where(
        _WINDOW.c.latitude.between(bindparam("south"), bindparam("north")),
        _WINDOW.c.longitude.between(bindparam("west"), bindparam("east")),
    )
    .limit(SCAN_LIMIT)
)
_SAME_TEXT = (
    select(_tips.c.id, _tips.c.received_at)
    .where(
        _tips.c.text_hash == bindparam("text_hash"),
        _tips.c.received_at >= bindparam("text_since"),
    )
    .order_by(_tips.c.id.desc())
    .limit(max(LINKS_PER_KIND, REPEAT_TEXT_COUNT))
)


def _both_checks():
    """The place and text checks as one statement: one round trip instead of two per tip.

    The text rows come first so the union takes its column types (received_at) from them.
    """
    text, near = _SAME_TEXT.subquery(), _NEARBY.subquery()
    return union_all(
        select(
            literal_column("'t'").label("kind"),
            text.c.id,
            cast(null(), _tips.c.latitude.type).label("latitude"),
            cast(null(), _tips.c.longitude.type).label("longitude"),
            cast(null(), _tips.c.incident_id.type).label("incident_id"),
            text.c.received_at,
        ),
        select(
            literal_column("'n'"),
            near.c.id,
            near.c.latitude,
            near.c.longitude,
            near.c.incident_id,
            cast(null(), _tips.c.received_at.type),
        ),
    )


_BOTH_CHECKS = _both_checks()
_SAME_TEXT_BY_REPORTER = select(func.count()).select_from(
    select(_tips.c.id)
    .where(
        _tips.c.text_hash == bindparam("text_hash"),
        _tips.c.reporter_id == bindparam("reporter_id"),
        _tips.c.received_at >= bindparam("since"),
    )
    .limit(REPEAT_TEXT_COUNT)
    .subquery()
)
_RECENT_PHOTOS = (
    select(_photos.c.phash, _photos.c.tip_id, _tips.c.reporter_id)
    .join(_tips, _tips.c.id == _photos.c.tip_id)
    .where(_photos.c.id >= bindparam("floor"), _tips.c.received_at >= bindparam("since"))
)
_EARLIEST = (
    select(_tips.c.id, _tips.c.received_at, _tips.c.latitude, _tips.c.longitude)
    .where(_tips.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_tips.c.received_at, _tips.c.id)
    .limit(1)
)
_INSERT_LINKS = insert(_links)
_INSERT_INCIDENT = insert(_incidents).returning(_incidents.c.id)
_JOIN_INCIDENT = (
    update(_tips)
    .where(_tips.c.id.in_(bindparam("ids", expanding=True)), _tips.c.incident_id.is_(None))
    .values(incident_id=bindparam("incident_id"))
)


@dataclass
class LinkPlan:
    """What the checks found for a tip about to be stored: its flags, incident and links."""

    flags: list[str] = field(default_factory=list)
    incident_id: int | None = None
    links: list[tuple[int, str, float]] = field(default_factory=list)  # other tip, kind, distance
    first_tip_candidate: tuple[dt.datetime, int] | None = None  # of a new incident


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def text_hash(text: str | None) -> str | None:
    """Hash the description folded for comparison; None for a tip without text."""
    folded = normalise_text(text or "")
    # Whitespace, punctuation, symbols (emoji) and invisible characters all go: Chinese
    # puts no spaces between words, so "在 二中" and "在二中" are the same text.
    canonical = "".join(c for c in folded if unicodedata.category(c)[0] not in "ZPSC")
    if not canonical:
        return None
    return hashlib.sha256(canonical.encode()).hexdigest()


def photo_distance(a: str, b: str) -> int:
    """Hamming distance of two 16-hex-digit pHashes, in bits."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


# --- the checks at intake ---------------------------------------------------------------------


def _nearby_params(
    settings: Settings, category_id: int, lat: float, lon: float, at: dt.datetime
) -> dict:
    """The place check's parameters: the category's window and the radius's bounding box."""
    window = dt.timedelta(minutes=settings.duplicate_window_minutes)
    dlat = settings.duplicate_radius_m / METRES_PER_DEGREE
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    return {
        "category_id": category_id,
        "since": at - window,
        "until": at + window,
        "south": lat - dlat,
        "north": lat + dlat,
        "west": lon - dlon,
        "east": lon + dlon,
    }


def _nearest_first(
    settings: Settings, rows: list, lat: float, lon: float
) -> list[tuple[float, object]]:
    """Tips of the category within the radius and window, nearest (then latest) first."""
    radius = settings.duplicate_radius_m
    found = [(distance_m(lat, lon, r.latitude, r.longitude), r) for r in rows]
    return sorted(((d, r) for d, r in found if d <= radius), key=lambda x: (x[0], -x[1].id))


def _join_incident(
    conn: Connection,
    plan: LinkPlan,
    near: list,
    category_id: int,
    at: dt.datetime,
) -> None:
    """Choose (or start) the incident and pull the nearby tips that have none into it."""
    chosen = next((r.incident_id for _, r in near if r.incident_id is not None), None)
    loose = [r for _, r in near if r.incident_id is None]
    if chosen is None:
        earliest = conn.execute(_EARLIEST, {"ids": [r.id for r in loose]}).one()
        chosen = conn.execute(
            _INSERT_INCIDENT,
            {
                "category_id": category_id,
                "first_tip_id": earliest.id,
                "latitude": earliest.latitude,
                "longitude": earliest.longitude,
                "created_at": at,
            },
        ).scalar_one()
        plan.first_tip_candidate = (earliest.received_at, earliest.id)
    if loose:
        conn.execute(_JOIN_INCIDENT, {"ids": [r.id for r in loose], "incident_id": chosen})
    plan.incident_id = chosen


def _first_photo_since(days: int, conn: Connection) -> int:
    """The id of the first photo stored in the window (photo ids grow with time)."""
    since = utcnow() - dt.timedelta(days=days)
    first = conn.execute(select(func.min(_photos.c.id)).where(_photos.c.created_at >= since))
    return first.scalar() or 0


@functools.cache
def _photo_floor(days: int) -> Refreshed:
    # The floor saves reading older photo rows; it may lag, never skip (stale means lower).
    return Refreshed(functools.partial(_first_photo_since, days), ttl=600)


def _similar_photos(
    conn: Connection,
    settings: Settings,
    phashes: list[str],
    reporter_id: int | None,
    at: dt.datetime,
) -> tuple[list[str], list[tuple[int, str, float]]]:
    """Flag and link tips of the window whose photos are within the pHash threshold."""
    days = settings.photo_window_days
    rows = conn.execute(
        _RECENT_PHOTOS,
        {"floor": _photo_floor(days).get(conn), "since": at - dt.timedelta(days=days)},
    ).all()
    news = [int(h, 16) for h in dict.fromkeys(phashes)]
    best: dict[int, tuple[int, int | None]] = {}  # other tip -> (bits, its reporter)
    for phash, tip_id, other_reporter in rows:
        other = int(phash, 16)
        bits = min((other ^ n).bit_count() for n in news)
        if bits <= settings.photo_match_bits and bits < best.get(tip_id, (65,))[0]:
            best[tip_id] = (bits, other_reporter)
    flags = []
    for _bits, other_reporter in best.values():
        same = reporter_id is not None and other_reporter == reporter_id
        flag = "repeat_photo" if same else "photo_reused"
        if flag not in flags:
            flags.append(flag)
    nearest = sorted(best.items(), key=lambda x: (x[1][0], x[0]))[:LINKS_PER_KIND]
    return sorted(flags), [(tip_id, "similar_photo", float(b)) for tip_id, (b, _) in nearest]


def _same_text(
    conn: Connection, rows: list, digest: str, reporter_id: int | None, at: dt.datetime
) -> tuple[bool, list[tuple[int, str, float]]]:
    """Say whether the text repeats past the thresholds, and link the latest earlier copies."""
    since = at - REPEAT_TEXT_BY_REPORTER
    by_anyone = sum(1 for r in rows if r.received_at >= at - REPEAT_TEXT_BY_ANYONE)
    repeated = by_anyone + 1 >= REPEAT_TEXT_COUNT
    if not repeated and reporter_id is not None and rows:
        params = {"text_hash": digest, "reporter_id": reporter_id, "since": since}
        repeated = conn.execute(_SAME_TEXT_BY_REPORTER, params).scalar() + 1 >= REPEAT_TEXT_COUNT
    return repeated, [(r.id, "same_text", 0.0) for r in rows[:LINKS_PER_KIND]]


def _read_checks(
    conn: Connection,
    settings: Settings,
    *,
    category_id: int,
    latitude: float | None,
    longitude: float | None,
    received_at: dt.datetime,
    text_digest: str | None,
) -> tuple[list, list]:
    """Read the category's nearby tips of the window and the latest tips with the same text."""
    near_rows: list = []
    text_rows: list = []
    text_params = {"text_hash": text_digest, "text_since": received_at - REPEAT_TEXT_BY_REPORTER}
    if latitude is not None and longitude is not None:
        params = _nearby_params(settings, category_id, latitude, longitude, received_at)
        if text_digest:
            for row in conn.execute(_BOTH_CHECKS, {**params, **text_params}):
                (text_rows if row.kind == "t" else near_rows).append(row)
        else:
            near_rows = conn.execute(_NEARBY, params).all()
    elif text_digest:
        text_rows = conn.execute(_SAME_TEXT, text_params).all()
    return near_rows, text_rows


def plan_links(
    conn: Connection,
    settings: Settings,
    *,
    category_id: int,
    reporter_id: int | None,
    latitude: float | None,
    longitude: float | None,
    received_at: dt.datetime,
    text_digest: str | None,
    phashes: list[str],
) -> LinkPlan:
    """Run the three checks for a tip about to be inserted; join its incident already.

    Runs before the insert so the tip row is written once, with its flags and incident.
    """
    plan = LinkPlan()
    located = latitude is not None and longitude is not None
    near_rows, text_rows = _read_checks(
        conn,
        settings,
        category_id=category_id,
        latitude=latitude,
        longitude=longitude,
        received_at=received_at,
        text_digest=text_digest,
    )
    if located:
        near = _nearest_first(settings, near_rows, latitude, longitude)
        if near:
            _join_incident(conn, plan, near, category_id, received_at)
            plan.links += [(r.id, "same_incident", round(d, 1)) for d, r in near[:LINKS_PER_KIND]]
    if phashes:
        flags, links = _similar_photos(conn, settings, phashes, reporter_id, received_at)
        plan.flags += flags
        plan.links += links
    if text_digest:
        repeated, links = _same_text(conn, text_rows, text_digest, reporter_id, received_at)
        if repeated:
            plan.flags.append("repeat_text")
        # A pair already tied as one incident needs no second row: the candidates list
        # compares text hashes itself (this halves the writes when one tip is flooded in).
        tied = {other for other, kind, _ in plan.links if kind == "same_incident"}
        plan.links += [link for link in links if link[0] not in tied]
    return plan


def write_links(conn: Connection, tip_id: int, received_at: dt.datetime, plan: LinkPlan) -> None:
    """Write the planned links both ways, once the tip has its id."""
    if plan.first_tip_candidate is not None and (received_at, tip_id) < plan.first_tip_candidate:
        conn.execute(
            update(_incidents)
            .where(_incidents.c.id == plan.incident_id)
            .values(first_tip_id=tip_id)
        )
    if not plan.links:
        return
    rows = []
    for other, kind, distance in plan.links:
        rows.append(
            {
                "tip_id": tip_id,
                "other_tip_id": other,
                "kind": kind,
                "distance": distance,
                "created_at": received_at,
            }
        )
        rows.append(
            {
                "tip_id": other,
                "other_tip_id": tip_id,
                "kind": kind,
                "distance": distance,
                "created_at": received_at,
            }
        )
    conn.execute(_INSERT_LINKS, rows)


# --- what supervisors see and do --------------------------------------------------------------


def duplicate_candidates(
    session: Session, tip_id: int, *, visible: ColumnElement[bool] | None = None
) -> list[dict]:
    """List the tips linked to this one or sharing its incident, for the admin tip page.

    Each entry: {"tip_id", "ref", "status", "received_at", "kinds" (e.g. ["same_incident",
    "similar_photo"]), "distance_m", "photo_bits", "same_incident", "same_reporter",
    "duplicate_of_this"}. Same incident first, then nearest. `visible` is the caller's
    scope condition on Tip: tips outside it are left out, not hidden behind a marker.
    """
    tip = session.get(Tip, tip_id)
    if tip is None:
        raise TipNotFound("no such tip")
    related = [Tip.id.in_(select(TipLink.other_tip_id).where(TipLink.tip_id == tip_id))]
    if tip.incident_id is not None:
        related.append(Tip.incident_id == tip.incident_id)
    query = select(Tip).where(or_(*related), Tip.id != tip_id)
    if visible is not None:
        query = query.where(visible)
    others = {t.id: t for t in session.scalars(query)}
    links: dict[int, dict[str, float | None]] = {}
    for other_id, kind, distance in session.execute(
        select(TipLink.other_tip_id, TipLink.kind, TipLink.distance).where(TipLink.tip_id == tip_id)
    ):
        links.setdefault(other_id, {})[kind] = distance
    out = []
    for other in others.values():
        kinds = links.get(other.id, {})
        same_incident = tip.incident_id is not None and other.incident_id == tip.incident_id
        shown = set(kinds)
        if same_incident:
            shown.add("same_incident")
        if tip.text_hash is not None and other.text_hash == tip.text_hash:
            shown.add("same_text")
        distance = kinds.get("same_incident")
        if distance is None and None not in (
            tip.latitude,
            tip.longitude,
            other.latitude,
            other.longitude,
        ):
            distance = round(
                distance_m(tip.latitude, tip.longitude, other.latitude, other.longitude), 1
            )
        out.append(
            {
                "tip_id": other.id,
                "ref": other.ref,
                "status": other.status,
                "received_at": other.received_at,
                "kinds": sorted(shown),
                "distance_m": distance,
                "photo_bits": kinds.get("similar_photo"),
                "same_incident": same_incident,
                "same_reporter": tip.reporter_id is not None
                and other.reporter_id == tip.reporter_id,
                "duplicate_of_this": other.duplicate_of_id == tip.id,
            }
        )
    far = float("inf")
    out.sort(
        key=lambda c: (
            not c["same_incident"],
            far if c["distance_m"] is None else c["distance_m"],
            c["tip_id"],
        )
    )
    return out


def tidy_incidents(session: Session, incident_ids: Collection[int | None]) -> int:
    """After tips left or joined these incidents: drop the empty ones; return how many.

    Each remaining incident names its earliest tip first (by `received_at`, then id, as
    intake orders them) and takes that tip's position. ORM statements with "fetch"
    keep the session's loaded incidents in step (merge and split hold some).
    """
    ids = [i for i in set(incident_ids) if i is not None]
    if not ids:
        return 0
    members = exists().where(_tips.c.incident_id == Incident.id)
    deleted = session.execute(
        delete(Incident)
        .where(Incident.id.in_(ids), ~members)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    member = _tips.alias("member")
    earliest = (
        select(member.c.id)
        .where(member.c.incident_id == Incident.id)
        .order_by(member.c.received_at, member.c.id)
        .limit(1)
        .correlate(Incident)
        .scalar_subquery()
    )

    def of_earliest(column):
        return select(column).where(_tips.c.id == earliest).scalar_subquery()

    session.execute(
        update(Incident)
        .where(Incident.id.in_(ids), Incident.first_tip_id.is_distinct_from(earliest))
        .values(
            first_tip_id=earliest,
            latitude=of_earliest(_tips.c.latitude),
            longitude=of_earliest(_tips.c.longitude),
        )
        .execution_options(synchronize_session="fetch")
    )
    return deleted or 0


def _event(tip: Tip, action: str, actor_id: int | None, data: dict) -> TipEvent:
    return TipEvent(
        tip_id=tip.id, at=utcnow(), actor_kind="staff", actor_id=actor_id, action=action, data=data
    )


def _locked_tips(session: Session, *ids: int) -> dict[int, Tip]:
    found = {t.id: t for t in session.scalars(select(Tip).where(Tip.id.in_(ids)).with_for_update())}
    if len(found) != len(set(ids)):
        raise TipNotFound("no such tip")
    return found


def merge_tips(session: Session, tip_id: int, into_tip_id: int, *, actor_id: int | None) -> Tip:
    """Put a tip into another tip's incident as its duplicate, with an audit event on both.

    The staff status (e.g. `duplicate`) is the workflow's to change; this only groups.
    """
    if tip_id == into_tip_id:
        raise TipsNotMergeable("a tip cannot be merged into itself")
    tips = _locked_tips(session, tip_id, into_tip_id)
    tip, into = tips[tip_id], tips[into_tip_id]
    seen, root = {into.id}, into
    while root.duplicate_of_id is not None:  # refuse a cycle: tip ← … ← into ← tip
        if root.duplicate_of_id == tip.id:
            raise TipsNotMergeable("the target is itself a duplicate of this tip")
        if root.duplicate_of_id in seen:
            break
        seen.add(root.duplicate_of_id)
        root = session.get(Tip, root.duplicate_of_id)
    if into.incident_id is None:
        first = min((tip, into), key=lambda x: (x.received_at, x.id))
        incident = Incident(
            category_id=into.category_id,
            first_tip_id=first.id,
            latitude=first.latitude,
            longitude=first.longitude,
            created_at=utcnow(),
        )
        session.add(incident)
        session.flush()
        into.incident_id = incident.id
    previous = tip.incident_id
    tip.incident_id = into.incident_id
    tip.duplicate_of_id = into.id
    session.flush()
    tidy_incidents(session, [previous, tip.incident_id])
    session.add_all(
        [
            _event(tip, "merged", actor_id, {"into": into.ref, "incident": tip.incident_id}),
            _event(into, "merged_in", actor_id, {"tip": tip.ref, "incident": tip.incident_id}),
        ]
    )
    session.flush()
    return tip


def split_tip(session: Session, tip_id: int, *, actor_id: int | None) -> Tip:
    """Take a tip out of its incident into a new one of its own, and clear its duplicate_of."""
    tip = _locked_tips(session, tip_id)[tip_id]
    previous = tip.incident_id
    shared = previous is not None and session.scalar(
        select(func.count()).select_from(Tip).where(Tip.incident_id == previous, Tip.id != tip.id)
    )
    if not shared and tip.duplicate_of_id is None:
        raise TipsNotMergeable("the tip is not joined to other tips")
    incident = Incident(
        category_id=tip.category_id,
        first_tip_id=tip.id,
        latitude=tip.latitude,
        longitude=tip.longitude,
        created_at=utcnow(),
    )
    session.add(incident)
    session.flush()
    tip.incident_id = incident.id
    tip.duplicate_of_id = None
    session.flush()
    tidy_incidents(session, [previous])
    session.add(
        _event(tip, "split", actor_id, {"from_incident": previous, "incident": incident.id})
    )
    session.flush()
    return tip
