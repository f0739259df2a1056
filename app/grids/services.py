"""Import grid layers and route points to grids.

Routing runs in process: the active layer's grid polygons are loaded once into
a GridIndex and cached per (database URL, active layer). Each call costs one
small query to learn which layer is active, so a new import is followed by
every worker on its next lookup, with no restart and no messaging.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import shapely
from sqlalchemy import ColumnElement, func, insert, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, DomainError
from app.grids.datum import CRS_NAMES, to_layer_datum
from app.grids.index import GridIndex, Hit
from app.grids.models import LEVELS, Grid, GridLayer
from app.grids.topology import Problem, check_layer
from app.refcache import Refreshed

# How many routers (one per database and active layer) a process keeps; a
# worker normally needs one, tests create many databases.
_MAX_CACHED_ROUTERS = 8
_REPORTED_ERRORS = 5


class LayerInvalid(DomainError):
    """The grid file has errors; nothing was imported. `problems` lists every finding."""

    code = "layer_invalid"

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        shown = "; ".join(p.message for p in errors[:_REPORTED_ERRORS])
        more = (
            f"; and {len(errors) - _REPORTED_ERRORS} more" if len(errors) > _REPORTED_ERRORS else ""
        )
        super().__init__(
            f"the grid file has {len(errors)} error(s), nothing was imported: {shown}{more}"
        )


class LayerExists(Conflict):
    """A layer is already active and the import did not ask to replace it."""

    code = "layer_exists"


class InvalidLocation(DomainError):
    """Coordinates that cannot be a place on Earth (the adapters should have refused them)."""

    code = "invalid_location"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import created; `warnings` are the topology check's non-fatal findings."""

    layer_id: int
    version: int
    crs: str
    feature_count: int
    grid_count: int
    replaced_version: int | None
    counts: dict[str, int] = field(default_factory=dict)  # features per level
    warnings: list[Problem] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where a point routes.

    `reason` is one of:
      "inside"       the point is in exactly one grid;
      "edge"         on a boundary shared by several grids, given to the lowest code;
      "nearest"      in no grid, but within `nearest_m` metres of this one;
      "outside_area" farther than that from every grid (no grid);
      "no_location"  no coordinates were given (no grid);
      "low_accuracy" the fix is vaguer than `max_accuracy_m` (no grid);
      "no_layer"     no grid layer has been imported (no grid).
    Without a grid the tip belongs in the "needs location" queue.
    """

    grid_id: int | None = None
    code: str | None = None
    name: str | None = None
    path: list[dict] = field(default_factory=list)  # [{code, name, level}], city first
    reason: str
    neighbours: list[str] = field(default_factory=list)
    layer_version: int | None = None
    distance_m: float | None = None  # for "nearest": metres to the grid's edge

    @property
    def routed(self) -> bool:
        """Return whether the point went to a grid."""
        return self.grid_id is not None

    def grid_json(self) -> dict | None:
        """Return the `grid` object of the API responses, or None."""
        if self.grid_id is None:
            return None
        return {"code": self.code, "name": self.name, "path": [dict(p) for p in self.path]}


# --- import -----------------------------------------------------------------------------


def active_layer(session: Session) -> GridLayer | None:
    """Return the active grid layer, if any."""
    return session.scalar(select(GridLayer).where(GridLayer.active == true()))


def import_layer(
    session: Session,
    collection: dict,
    *,
    crs: str,
    replace: bool,
    source_name: str,
    synthetic: bool = False,
) -> ImportResult:
    """Check a grid file and store it as the new active layer version (flushes, never commits).

    The previous layer, if any, is only deactivated: tips routed with it keep
    their grid ids and layer version.
    """
    if crs not in CRS_NAMES:
        raise DomainError(
            f"unknown datum {crs!r}; use one of {', '.join(CRS_NAMES)}",
            code="invalid_crs",
            fields={"crs": [f"must be one of {', '.join(CRS_NAMES)}"]},
        )
    current = active_layer(session)
    if current is not None and not replace:
        raise LayerExists(
            f"grid layer version {current.version} ({current.source_name}) is active; "
            "import with --replace to replace it (the old version is kept for old tips)"
        )
    checked = check_layer(collection)
    if not checked.ok:
        raise LayerInvalid(checked.problems)

    version = (session.scalar(select(func.max(GridLayer.version))) or 0) + 1
    layer = GridLayer(
        version=version,
        crs=crs,
        source_name=source_name[:255],
        imported_at=utcnow(),
        active=True,
        synthetic=synthetic,
        feature_count=len(checked.features),
    )
    try:
        if current is not None:
            current.active = False
            session.flush()  # before the insert: the database allows one active layer
        session.add(layer)
        session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "another grid import ran at the same time; try again", code="import_conflict"
        ) from exc

    ids: dict[str, int] = {}
    paths: dict[str, str] = {}
    counts: dict[str, int] = {}
    for level in LEVELS:  # parents before children, so parent ids are known
        features = [f for f in checked.features if f.level == level]
        if not features:
            continue
        rows = []
        for f in features:
            path = f.code if f.parent is None else f"{paths[f.parent]}/{f.code}"
            paths[f.code] = path
            min_lon, min_lat, max_lon, max_lat = f.geometry.bounds
            rows.append(
                {
                    "layer_id": layer.id,
                    "code": f.code,
                    "name": f.name,
                    "level": f.level,
                    "parent_id": ids.get(f.parent) if f.parent else None,
                    "path": path,
                    "geometry": shapely.to_wkb(f.geometry),
                    "min_lon": min_lon,
                    "min_lat": min_lat,
                    "max_lon": max_lon,
                    "max_lat": max_lat,
                    "station": f.station,
                    "contacts": f.contacts,
                }
            )
        inserted = session.execute(
            insert(Grid).returning(Grid.id, Grid.code, sort_by_parameter_order=True), rows
        )
        ids.update((code, grid_id) for grid_id, code in inserted)
        counts[level] = len(rows)
    _active_layer.clear()  # this process routes by the new layer from its commit on
    return ImportResult(
        layer_id=layer.id,
        version=version,
        crs=crs,
        feature_count=len(checked.features),
        grid_count=counts.get("grid", 0),
        replaced_version=current.version if current is not None else None,
        counts=counts,
        warnings=checked.warnings,
    )


# --- routing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _GridInfo:
    code: str
    name: str
    path: tuple[tuple[str, str, str], ...]  # (code, name, level), city first


@dataclass(frozen=True, slots=True)
class _Router:
    version: int
    crs: str
    index: GridIndex
    grids: dict[int, _GridInfo]

    def placement(self, hit: Hit) -> Placement:
        info = self.grids[hit.grid_id]
        return Placement(
            grid_id=hit.grid_id,
            code=info.code,
            name=info.name,
            path=[{"code": c, "name": n, "level": lv} for c, n, lv in info.path],
            reason=hit.reason,
            neighbours=list(hit.neighbours),
            layer_version=self.version,
            distance_m=hit.distance_m if hit.reason == "nearest" else None,
        )


_routers: OrderedDict[tuple, _Router] = OrderedDict()
_routers_lock = threading.Lock()
# A Core statement on the table: half the overhead of the ORM-enabled equivalent, and
# this runs on every routed point.
_layers = GridLayer.__table__
_ACTIVE = select(_layers.c.id, _layers.c.version, _layers.c.crs, _layers.c.imported_at).where(
    _layers.c.active == true()
)


_active_layer = Refreshed(lambda conn: conn.execute(_ACTIVE).first())


def _router(session: Session) -> _Router | None:
    """Return the router of the active layer, building it on first use (thread-safe)."""
    row = _active_layer.get(session)
    if row is None:
        return None
    # imported_at and the id tell apart two databases that reuse a URL (tests, re-seeding).
    key = (str(session.get_bind().engine.url), row.id, row.version, row.imported_at)
    router = _routers.get(key)
    if router is not None:
        return router
    with _routers_lock:
        router = _routers.get(key)
        if router is None:
            router = _build_router(session, row.id, row.version, row.crs)
            _routers[key] = router
            while len(_routers) > _MAX_CACHED_ROUTERS:
                _routers.popitem(last=False)
        return router


def _build_router(session: Session, layer_id: int, version: int, crs: str) -> _Router:
    features = session.execute(
        select(Grid.id, Grid.code, Grid.name, Grid.level, Grid.path).where(
            Grid.layer_id == layer_id
        )
    ).all()
    by_code = {f.code: (f.code, f.name, f.level) for f in features}
    grids = {
        f.id: _GridInfo(f.code, f.name, tuple(by_code[c] for c in f.path.split("/")))
        for f in features
        if f.level == "grid"
    }
    shapes = session.execute(
        select(Grid.id, Grid.geometry).where(Grid.layer_id == layer_id, Grid.level == "grid")
    ).all()
    geoms = shapely.from_wkb([wkb for _, wkb in shapes])
    index = GridIndex.build(
        [
            (grid_id, grids[grid_id].code, geom)
            for (grid_id, _), geom in zip(shapes, geoms, strict=True)
        ]
    )
    return _Router(version=version, crs=crs, index=index, grids=grids)


def clear_router_cache() -> None:
    """Forget every cached router (tests, or after restoring a database in place)."""
    with _routers_lock:
        _routers.clear()
    _active_layer.clear()


def _check_location(lat, lon, accuracy_m) -> None:
    fields: dict[str, list[str]] = {}
    for name, value, limit in (("latitude", lat, 90.0), ("longitude", lon, 180.0)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            fields[name] = ["must be a number"]
        elif not math.isfinite(value) or abs(value) > limit:
            fields[name] = [f"must be between -{limit:g} and {limit:g}"]
    if accuracy_m is not None and (
        isinstance(accuracy_m, bool)
        or not isinstance(accuracy_m, int | float)
        or not math.isfinite(accuracy_m)
        or accuracy_m < 0
    ):
        fields["accuracy_m"] = ["must be a non-negative number of metres"]
    if fields:
        raise InvalidLocation("the location is not a valid WGS-84 position", fields=fields)


def route_point(
    session: Session,
    lat: float | None,
    lon: float | None,
    accuracy_m: float | None = None,
    *,
    nearest_m: float = 300.0,
    max_accuracy_m: float | None = None,
) -> Placement:
    """Return the grid a WGS-84 point belongs to, or why it has none (see Placement.reason).

    Missing coordinates are "no_location"; coordinates off the globe raise
    InvalidLocation. With `max_accuracy_m`, a vaguer fix is "low_accuracy".
    """
    if lat is None or lon is None:
        return Placement(reason="no_location")
    _check_location(lat, lon, accuracy_m)
    router = _router(session)
    if router is None:
        return Placement(reason="no_layer")
    if max_accuracy_m is not None and accuracy_m is not None and accuracy_m > max_accuracy_m:
        return Placement(reason="low_accuracy", layer_version=router.version)
    x, y = to_layer_datum(float(lon), float(lat), router.crs)
    hit = router.index.locate(x, y, accuracy_m=accuracy_m, nearest_m=nearest_m)
    if hit is None:
        return Placement(reason="outside_area", layer_version=router.version)
    return router.placement(hit)


def lookup_grid(session: Session, lat: float, lon: float) -> Placement | None:
    """Return the grid that holds the point ("inside" or "edge"), or None; no nearest fallback."""
    placement = route_point(session, lat, lon, nearest_m=0.0)
    return placement if placement.reason in ("inside", "edge") else None


# --- hierarchy --------------------------------------------------------------------------


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def subtree_condition(path: str) -> ColumnElement[bool]:
    """Return a filter on Grid for the feature at `path` and everything below it."""
    return or_(Grid.path == path, Grid.path.like(_escape_like(path) + "/%", escape="\\"))


def grid_subtree_ids(
    session: Session, code: str, *, level: str | None = None, all_layers: bool = False
) -> list[int]:
    """Return the ids of the feature `code` and its descendants (optionally one level only).

    By default in the active layer; with `all_layers`, in every version that has
    the code, so staff scoped to a town still see tips routed with an older layer.
    """
    anchors = select(Grid.layer_id, Grid.path).where(Grid.code == code)
    if not all_layers:
        anchors = anchors.join(GridLayer, GridLayer.id == Grid.layer_id).where(
            GridLayer.active == true()
        )
    ids: list[int] = []
    for layer_id, path in session.execute(anchors).all():
        query = select(Grid.id).where(Grid.layer_id == layer_id, subtree_condition(path))
        if level is not None:
            query = query.where(Grid.level == level)
        ids.extend(session.scalars(query))
    return sorted(ids)


def describe_grid(session: Session, grid_id: int) -> dict | None:
    """Return {code, name, path, layer_version} for a stored grid id (any layer version)."""
    grid = session.get(Grid, grid_id)
    if grid is None:
        return None
    codes = grid.path.split("/")
    rows = session.execute(
        select(Grid.code, Grid.name, Grid.level).where(
            Grid.layer_id == grid.layer_id, Grid.code.in_(codes)
        )
    ).all()
    by_code = {r.code: {"code": r.code, "name": r.name, "level": r.level} for r in rows}
    return {
        "code": grid.code,
        "name": grid.name,
        "path": [by_code[c] for c in codes if c in by_code],
        "layer_version": grid.layer.version,
    }
