"""Everything the tip page shows, gathered in one place from a tip the viewer may see.

Positions are given in the datum of the map tiles: phones report WGS-84, grid
layers may be drawn in GCJ-02 or BD-09, and tiles published in China are
GCJ-02, so both the point and the outlines are converted before drawing
(mixing datums puts the point about 470 m off around the reference city).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import mapping
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.grids.datum import CRS_NAMES, bd09_to_wgs84, gcj02_to_wgs84, to_layer_datum
from app.grids.models import Grid, GridLayer
from app.grids.services import describe_grid
from app.people.models import Reporter, StaffUser
from app.reports.clock import clock_status
from app.reports.models import Tip
from app.reports.workflow import allowed_actions, tip_history
from app.staff.actions import related_tips
from app.staff.scope import Viewer, staff_who_can_see, visible_tip

_TO_WGS84 = {"wgs84": lambda lon, lat: (lon, lat), "gcj02": gcj02_to_wgs84, "bd09": bd09_to_wgs84}


def convert_point(lon: float, lat: float, source: str, target: str) -> tuple[float, float]:
    """Convert a point between WGS-84, GCJ-02 and BD-09 (through WGS-84)."""
    if source == target:
        return lon, lat
    return to_layer_datum(*_TO_WGS84[source](lon, lat), target)


def convert_geometry(geometry, source: str, target: str):
    """Convert every vertex of a shapely geometry between datums."""
    if source == target:
        return geometry

    def move(coords: np.ndarray) -> np.ndarray:
        return np.array([convert_point(x, y, source, target) for x, y in coords])

    return shapely.transform(geometry, move)


@dataclass
class TipPage:
    """The tip and what surrounds it, ready for a template or a JSON answer."""

    tip: Tip
    category: dict
    reporter: dict | None
    grid: dict | None
    neighbours: list[dict]
    map: dict
    clock: dict
    history: list[dict]
    actions: list[str]
    assignable: list[dict]
    assignee: str | None
    notes: list[dict] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    trail: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    joined: bool = False  # in an incident with other tips, or a duplicate: it can be split off


def _outline(session: Session, grid_id: int | None, datum: str) -> dict | None:
    if grid_id is None:
        return None
    row = session.execute(
        select(Grid.geometry, GridLayer.crs)
        .join(GridLayer, GridLayer.id == Grid.layer_id)
        .where(Grid.id == grid_id)
    ).first()
    if row is None:
        return None
    return mapping(convert_geometry(shapely.from_wkb(row.geometry), row.crs, datum))


def _neighbours(session: Session, tip: Tip, datum: str) -> list[dict]:
    """Return the neighbour grids named at routing time, from the same layer version."""
    codes = list(tip.neighbour_grids or [])
    if not codes or tip.layer_version is None:
        return []
    rows = session.execute(
        select(Grid.code, Grid.name, Grid.geometry, GridLayer.crs)
        .join(GridLayer, GridLayer.id == Grid.layer_id)
        .where(GridLayer.version == tip.layer_version, Grid.code.in_(codes))
    ).all()
    found = {r.code: r for r in rows}
    return [
        {
            "code": code,
            "name": found[code].name if code in found else None,
            "outline": mapping(
                convert_geometry(shapely.from_wkb(found[code].geometry), found[code].crs, datum)
            )
            if code in found
            else None,
        }
        for code in codes
    ]


def tip_page(
    session: Session,
    viewer: Viewer,
    ref: str,
    *,
    tile_datum: str = "wgs84",
    now: dt.datetime | None = None,
) -> TipPage:
    """Gather the tip page of a tip the viewer may see (TipNotFound otherwise)."""
    if tile_datum not in CRS_NAMES:
        tile_datum = "wgs84"
    tip = visible_tip(session, viewer, ref)
    now = now or utcnow()
    reporter = session.get(Reporter, tip.reporter_id) if tip.reporter_id else None
    neighbours = _neighbours(session, tip, tile_datum)
    point = None
    if tip.latitude is not None and tip.longitude is not None:
        lon, lat = convert_point(tip.longitude, tip.latitude, "wgs84", tile_datum)
        point = {"lat": lat, "lon": lon, "accuracy_m": tip.accuracy_m}
    history = tip_history(session, tip.id)
    candidates = related_tips(session, viewer, tip)
    assignable = staff_who_can_see(session, tip)
    assignee = session.get(StaffUser, tip.assignee_id) if tip.assignee_id else None
    return TipPage(
        tip=tip,
        category={
            "code": tip.category.code,
            "zh": tip.category.name_zh,
            "en": tip.category.name_en,
        },
        reporter=None
        if reporter is None
        else {
            "pseudonym": reporter.pseudonym,
            "role": reporter.role,
            "trust": reporter.trust_score,
            "status": reporter.status,
        },
        grid=describe_grid(session, tip.grid_id) if tip.grid_id else None,
        neighbours=[{k: v for k, v in n.items() if k != "outline"} for n in neighbours],
        map={
            "datum": tile_datum,
            "point": point,
            "grid": _outline(session, tip.grid_id, tile_datum),
            "neighbours": [n["outline"] for n in neighbours if n["outline"]],
        },
        clock=clock_status(tip, now),
        history=history,
        actions=allowed_actions(tip.status),
        assignable=[{"id": s.id, "username": s.username, "role": s.role} for s in assignable],
        assignee=assignee.username if assignee is not None else None,
        notes=[h for h in history if h["action"] == "note"],
        messages=[h for h in history if h["is_message"]],
        trail=[h for h in history if h["action"] != "note" and not h["is_message"]],
        candidates=candidates,
        joined=tip.duplicate_of_id is not None or any(c["same_incident"] for c in candidates),
    )
