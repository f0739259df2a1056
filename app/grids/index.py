"""An in-process index of grid polygons: which grid holds this point?

The hot path is one STRtree envelope query plus a prepared point-in-polygon
test on the few candidates (usually one to four). On the 2-core dev machine
the costly parts are wrapping the coordinates in a shapely Point and wrapping
that Point in an array for the tree (≈ 3 µs of ≈ 8 µs with `Point(x, y)` and
`tree.query(point)`), so the point is written into a per-thread one-element
array with `shapely.points(..., out=...)` and the tree is queried with that
array (≈ 4.5 µs in all). Testing the candidates against prepared polygons
measured faster than `predicate="intersects"` in the tree query (≈ 7 µs), and
keeps the test logarithmic in a polygon's vertex count for real, detailed
boundaries. See bench/bench_grids.py.

Reasons a point gets:

- "inside": the point lies in exactly one grid (its closed polygon, so a point
  on the outer edge of the city counts too);
- "edge": the point lies on a boundary shared by two or more grids (an edge or
  a vertex). Tie-break: the grid with the lowest `code`, comparing codes as
  plain strings (code point order; "G0009" < "G0010" thanks to zero padding).
  The rule does not depend on database ids, import order or the tree's
  internal order, so every rebuild and every worker gives the same answer;
- "nearest": the point is in no grid but within `nearest_m` metres of one; the
  closest grid wins (ties again go to the lowest code). Distances are metres
  on a local equirectangular projection around the point (longitude scaled by
  cos(latitude)), accurate to a fraction of a per cent over a few hundred
  metres, not degrees;
- no hit (None): farther than `nearest_m` from every grid.

`neighbours` lists, for information, the other grids that the accuracy circle
(radius = the reported accuracy, capped at NEIGHBOUR_RADIUS_CAP_M) touches.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import shapely

METRES_PER_DEGREE = 6_371_008.8 * math.pi / 180  # along a meridian, mean Earth radius
# Accuracy circles wider than this are not worth listing grids for: a 10 km
# fix would name half the city.
NEIGHBOUR_RADIUS_CAP_M = 1_000.0
# Keep the longitude scale finite near the poles (no grids there, but no division by zero).
_MIN_COS_LAT = 1e-6
# 32-gon approximating a unit circle (closed ring); scaled per query for the accuracy circle.
_UNIT_CIRCLE = np.array(
    [(math.cos(a), math.sin(a)) for a in np.linspace(0.0, 2 * math.pi, 33)[:-1]] + [(1.0, 0.0)]
)


class Hit(NamedTuple):
    """The grid a point routes to, and why (a tuple: cheap to make on the hot path)."""

    grid_id: int
    code: str
    reason: str  # "inside" | "edge" | "nearest"
    distance_m: float = 0.0
    neighbours: tuple[str, ...] = ()


class GridIndex:
    """Immutable point-to-grid index over grid-level polygons (any datum, in degrees)."""

    __slots__ = ("_array", "_codes", "_geoms", "_ids", "_local", "_tree")

    def __init__(self, ids: list[int], codes: list[str], geoms: np.ndarray):
        self._ids = ids
        self._codes = codes
        self._array = geoms
        self._geoms = list(geoms)  # list indexing is cheaper than object-array indexing
        self._tree = shapely.STRtree(geoms)
        self._local = threading.local()  # per-thread query buffers, see _query_point

    @classmethod
    def build(cls, items: Iterable[tuple[int, str, shapely.Geometry]]) -> GridIndex:
        """Index (grid_id, code, polygon) triples; codes must be unique."""
        # Sorting by code makes "lowest tree index" mean "lowest code": the tie-break is a min().
        ordered = sorted(items, key=lambda item: item[1])
        codes = [code for _, code, _ in ordered]
        if len(set(codes)) != len(codes):
            raise ValueError("grid codes must be unique within an index")
        geoms = np.array([geom for _, _, geom in ordered], dtype=object)
        if len(geoms) and not all(shapely.get_type_id(geoms) >= 0):
            raise ValueError("every grid needs a geometry")
        shapely.prepare(geoms)  # point-in-polygon with an edge index on each polygon
        if len(geoms):
            # GEOS builds a prepared polygon's point locator lazily on first use, and that
            # first use is not thread-safe (libgeos/geos#825); shapely releases the GIL in
            # predicates. Do the first use here, before any worker thread sees the index.
            shapely.intersects(geoms, shapely.point_on_surface(geoms))
        return cls([int(grid_id) for grid_id, _, _ in ordered], codes, geoms)

    def __len__(self) -> int:
        return len(self._ids)

    def locate(
        self,
        x: float,
        y: float,
        *,
        accuracy_m: float | None = None,
        nearest_m: float = 300.0,
    ) -> Hit | None:
        """Return the grid holding (x = lon, y = lat), the nearest within `nearest_m`, or None."""
        if not (-180.0 <= x <= 180.0 and -90.0 <= y <= 90.0):
            return None  # also catches NaN
        point, box_hits = self._query_point(x, y)
        geoms = self._geoms
        hits = [i for i in box_hits if geoms[i].intersects(point)]
        if hits:
            index = hits[0] if len(hits) == 1 else min(hits)
            reason = "inside" if len(hits) == 1 else "edge"
            distance = 0.0
        else:
            found = self._nearest(x, y, nearest_m)
            if found is None:
                return None
            index, distance = found
            reason = "nearest"
        neighbours: tuple[str, ...] = ()
        if accuracy_m is not None and accuracy_m > 0:
            neighbours = self._neighbours(x, y, accuracy_m, index)
        return Hit(self._ids[index], self._codes[index], reason, distance, neighbours)

    def _query_point(self, x: float, y: float) -> tuple[shapely.Point, list[int]]:
        """Return the point and the indices of the polygons whose envelopes hold it."""
        local = self._local
        try:
            coords, holder = local.coords, local.holder
        except AttributeError:
            coords = local.coords = np.empty((1, 2))
            holder = local.holder = np.empty(1, dtype=object)
        coords[0, 0] = x
        coords[0, 1] = y
        shapely.points(coords, out=holder)
        return holder[0], self._tree.query(holder)[1].tolist()

    def locate_many(self, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
        """Return the grid id holding each point ("inside"/"edge" rule), -1 where none does."""
        points = shapely.points(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
        point_idx, tree_idx = self._tree.query(points, predicate="intersects")
        best = np.full(len(points), len(self._ids), dtype=np.int64)
        np.minimum.at(best, point_idx, tree_idx)  # lowest code wins on shared boundaries
        ids = np.append(np.asarray(self._ids, dtype=np.int64), -1)
        return ids[best]

    def _nearest(self, x: float, y: float, nearest_m: float) -> tuple[int, float] | None:
        """Return (index, metres) of the closest grid within nearest_m, lowest code on ties."""
        if nearest_m <= 0:
            return None
        cos_lat = max(math.cos(math.radians(y)), _MIN_COS_LAT)
        dy = nearest_m / METRES_PER_DEGREE
        dx = dy / cos_lat
        candidates = np.sort(self._tree.query(shapely.box(x - dx, y - dy, x + dx, y + dy)))
        if not len(candidates):
            return None
        # Move the candidates into local metres around the point, then measure.
        scale = np.array([cos_lat * METRES_PER_DEGREE, METRES_PER_DEGREE])
        local = shapely.transform(
            self._array[candidates],
            lambda coords: (coords - (x, y)) * scale,
        )
        distances = shapely.distance(local, shapely.points((0.0, 0.0)))
        k = int(np.argmin(distances))  # first minimum: the lowest code among equals
        if distances[k] > nearest_m:
            return None
        return int(candidates[k]), float(distances[k])

    def _neighbours(self, x: float, y: float, accuracy_m: float, chosen: int) -> tuple[str, ...]:
        """Return the codes of other grids the (capped) accuracy circle touches, sorted."""
        radius_deg = min(accuracy_m, NEIGHBOUR_RADIUS_CAP_M) / METRES_PER_DEGREE
        cos_lat = max(math.cos(math.radians(y)), _MIN_COS_LAT)
        # A circle in metres is an ellipse in degrees: stretch longitude by 1 / cos(lat).
        rx, ry = radius_deg / cos_lat, radius_deg
        # Most fixes sit well inside one grid: an envelope query settles those cheaply.
        candidates = self._tree.query(shapely.box(x - rx, y - ry, x + rx, y + ry)).tolist()
        if all(i == chosen for i in candidates):
            return ()
        ellipse = shapely.polygons(_UNIT_CIRCLE * (rx, ry) + (x, y))
        geoms = self._geoms
        touched = [i for i in candidates if i != chosen and geoms[i].intersects(ellipse)]
        return tuple(self._codes[i] for i in sorted(touched))
