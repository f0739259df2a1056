"""What the admin maps draw: open tips as points and grid outlines, in the datum of the tiles.

Tips are stored in WGS-84 and grid polygons in their layer's datum; map tiles
published in China are often GCJ-02 or BD-09, ~470 m away. Everything sent to
a map is converted to the tiles' datum here, and every point clicked on a map
is converted back to WGS-84 before it is stored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.grids.datum import (
    CRS_BD09,
    CRS_GCJ02,
    CRS_NAMES,
    CRS_WGS84,
    bd09_to_wgs84,
    gcj02_to_wgs84,
    to_layer_datum,
)
from app.grids.models import Grid, GridLayer
from app.reports.models import Category, Tip
from app.staff.queue import QueueFilters, filter_conditions
from app.staff.scope import Viewer

MAX_POINTS = 2000
_TO_WGS84 = {
    CRS_WGS84: lambda lon, lat: (lon, lat),
    CRS_GCJ02: gcj02_to_wgs84,
    CRS_BD09: bd09_to_wgs84,
}
_MAX_CACHED_LAYERS = 4
_outlines: OrderedDict[tuple, list[tuple[str, dict]]] = OrderedDict()
_outlines_lock = threading.Lock()


def _check_datum(datum: str) -> None:
    if datum not in CRS_NAMES:
        raise DomainError(f"unknown datum {datum!r}", code="invalid_crs")


def to_display(lat: float, lon: float, datum: str) -> tuple[float, float]:
    """Return (lat, lon) of a WGS-84 point in the map's datum."""
    _check_datum(datum)
    x, y = to_layer_datum(lon, lat, datum)
    return y, x


def from_display(lat: float, lon: float, datum: str) -> tuple[float, float]:
    """Return the WGS-84 (lat, lon) of a point picked on a map drawn in `datum`."""
    _check_datum(datum)
    x, y = _TO_WGS84[datum](lon, lat)
    return y, x


def _convert(geom: shapely.Geometry, source: str, target: str) -> shapely.Geometry:
    """Move a geometry from one datum to another, vertex by vertex."""
    if source == target:
        return geom

    def move(coords: np.ndarray) -> np.ndarray:
        out = np.empty_like(coords)
        for i, (lon, lat) in enumerate(coords):
            out[i] = to_layer_datum(*_TO_WGS84[source](lon, lat), target)
        return out

    return shapely.transform(geom, move)


def tip_points(
    session: Session,
    viewer: Viewer,
    *,
    datum: str,
    category: str | None = None,
    priority: str | None = None,
    locale: str = "zh",
    limit: int = MAX_POINTS,
) -> dict:
    """Return the open, located tips the viewer may see as a GeoJSON FeatureCollection."""
    _check_datum(datum)
    conds = filter_conditions(
        session, viewer, QueueFilters(category=category or None, priority=priority or None)
    )
    name = Category.name_en if locale == "en" else Category.name_zh
    rows = session.execute(
        select(
            Tip.ref,
            Tip.latitude,
            Tip.longitude,
            Tip.priority,
            Tip.status,
            Category.code,
            name,
            Tip.grid_path,
        )
        .join(Category, Category.id == Tip.category_id)
        .where(*conds, Tip.latitude.is_not(None), Tip.longitude.is_not(None))
        .order_by(Tip.priority_rank, Tip.received_at.desc(), Tip.id.desc())
        .limit(limit)
    ).all()
    features = []
    for r in rows:
        lat, lon = to_display(r.latitude, r.longitude, datum)
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]},
                "properties": {
                    "ref": r.ref,
                    "priority": r.priority,
                    "status": r.status,
                    "category": r.code,
                    "label": r[6],
                    "grid": r.grid_path.rsplit("/", 1)[-1] if r.grid_path else None,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features, "truncated": len(rows) >= limit}


def _layer_outlines(session: Session, layer: GridLayer, datum: str) -> list[tuple[str, dict]]:
    """Return (path, feature) of every grid-level polygon of a layer, converted once per process."""
    key = (str(session.get_bind().engine.url), layer.id, layer.imported_at, datum)
    cached = _outlines.get(key)
    if cached is not None:
        return cached
    rows = session.execute(
        select(Grid.code, Grid.name, Grid.path, Grid.geometry)
        .where(Grid.layer_id == layer.id, Grid.level == "grid")
        .order_by(Grid.code)
    ).all()
    geoms = shapely.from_wkb([r.geometry for r in rows])
    built = []
    for r, geom in zip(rows, geoms, strict=True):
        # 1e-6° is 10 cm: plenty for an outline, and a third of the bytes.
        shown = shapely.set_precision(_convert(geom, layer.crs, datum), 1e-6)
        built.append(
            (
                r.path,
                {
                    "type": "Feature",
                    "geometry": shapely.geometry.mapping(shown),
                    "properties": {"code": r.code, "name": r.name},
                },
            )
        )
    with _outlines_lock:
        _outlines[key] = built
        while len(_outlines) > _MAX_CACHED_LAYERS:
            _outlines.popitem(last=False)
    return built


def grid_outlines(session: Session, viewer: Viewer, *, datum: str) -> dict:
    """Return the active layer's grids the viewer may see, as GeoJSON in the map's datum."""
    _check_datum(datum)
    layer = session.scalar(select(GridLayer).where(GridLayer.active.is_(True)))
    if layer is None:
        return {"type": "FeatureCollection", "features": []}
    features = [f for path, f in _layer_outlines(session, layer, datum) if viewer.can_see(path)]
    return {"type": "FeatureCollection", "features": features, "version": layer.version}
