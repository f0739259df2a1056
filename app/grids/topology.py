"""Check a grid file before it is imported: structure, hierarchy and geometry.

Rules (errors refuse the import; warnings are reported and the import goes on):

Structure (errors)
  - the document is a GeoJSON FeatureCollection with a list of features;
  - each feature is an object with `properties`: `code` (non-empty string,
    at most 64 characters, no "/" because paths join codes with it, unique in
    the file), `name` (non-empty string), `level` (city, town, village or
    grid), `parent` (a code or null); optional `station` (string) and
    `contacts` (object or array);
  - the file has at least one grid-level feature.

Hierarchy (errors)
  - a city has no parent; every other level has one, present in the file;
  - town → city, village → town, grid → village. A grid may also hang directly
    under a town, but only a town with no villages: a town is either split
    into villages or not, so a supervisor scoped to a village never misses
    grids that sit beside it.

Geometry
  - every feature has a Polygon or MultiPolygon (error), with coordinates in
    degrees (error otherwise: projected metres are the usual mistake), valid by
    OGC rules (error, with the reason from GEOS `explain_validity`);
  - grids overlapping each other by more than `overlap_tolerance_m2` (error:
    a point there would belong to two grids);
  - areas inside the city covered by no grid, larger than `gap_tolerance_m2`
    (warning: tips there go to the nearest grid or to "needs location");
  - a feature reaching outside its parent by more than
    `containment_tolerance_m2` (warning).

Areas are converted to square metres with a local equirectangular scale at
each geometry's latitude (within about 1 % at city scale), in whatever datum
the file was drawn, since the datums differ only by a shift of a few hundred
metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.validation import explain_validity

LEVELS = ("city", "town", "village", "grid")
MAX_CODE_LENGTH = 64
MAX_NAME_LENGTH = 200
METRES_PER_DEGREE = 6_371_008.8 * math.pi / 180  # mean Earth radius
# Beyond this many problems of one kind, report a count instead of each one.
MAX_REPORTED_PER_KIND = 50

_PARENT_LEVEL = {"town": ("city",), "village": ("town",), "grid": ("village", "town")}


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of the check, addressed to the person who drew the file."""

    severity: str  # "error" refuses the import, "warning" is reported
    code: str
    feature: str | None
    message: str
    location: tuple[float, float] | None = None  # (lon, lat), for geometric findings
    area_m2: float | None = None

    def __str__(self) -> str:
        where = f" [{self.feature}]" if self.feature else ""
        return f"{self.severity}: {self.code}{where}: {self.message}"


@dataclass(slots=True)
class LayerFeature:
    """A feature whose properties passed the structural checks."""

    index: int
    code: str
    name: str
    level: str
    parent: str | None
    station: str | None
    contacts: dict | list | None
    geometry: shapely.Geometry | None = None  # None when the geometry itself is unusable


@dataclass(slots=True)
class CheckedLayer:
    """The parsed features and every problem found; import only when `ok`."""

    features: list[LayerFeature] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def check_features(
    feature_collection: dict,
    *,
    overlap_tolerance_m2: float = 1.0,
    gap_tolerance_m2: float = 1.0,
    containment_tolerance_m2: float = 1.0,
) -> list[Problem]:
    """Return every problem of a grid file; errors first, each with a readable message."""
    return check_layer(
        feature_collection,
        overlap_tolerance_m2=overlap_tolerance_m2,
        gap_tolerance_m2=gap_tolerance_m2,
        containment_tolerance_m2=containment_tolerance_m2,
    ).problems


def check_layer(
    feature_collection: dict,
    *,
    overlap_tolerance_m2: float = 1.0,
    gap_tolerance_m2: float = 1.0,
    containment_tolerance_m2: float = 1.0,
) -> CheckedLayer:
    """Parse and check a grid file; the import uses the parsed features when there is no error."""
    result = CheckedLayer()
    if not isinstance(feature_collection, dict) or feature_collection.get("type") != (
        "FeatureCollection"
    ):
        result.problems.append(
            _error(
                "not_feature_collection",
                None,
                'the file is not a GeoJSON FeatureCollection (expected {"type": '
                '"FeatureCollection", "features": [...]})',
            )
        )
        return result
    raw = feature_collection.get("features")
    if not isinstance(raw, list):
        result.problems.append(
            _error("not_feature_collection", None, 'the FeatureCollection has no "features" list')
        )
        return result

    problems = result.problems
    by_code: dict[str, LayerFeature] = {}
    for index, item in enumerate(raw):
        feature = _parse_feature(index, item, problems)
        if feature is None:
            continue
        if feature.code in by_code:
            first = by_code[feature.code]
            problems.append(
                _error(
                    "duplicate_code",
                    feature.code,
                    f"feature #{index + 1} reuses code {feature.code!r} of feature "
                    f"#{first.index + 1}; codes must be unique",
                )
            )
            continue
        by_code[feature.code] = feature
        result.features.append(feature)

    if not any(f.level == "grid" for f in result.features):
        problems.append(
            _error(
                "no_grids",
                None,
                'the file has no feature with level "grid"; tips route only to grids',
            )
        )
    _check_hierarchy(result.features, by_code, problems)
    _check_overlaps(result.features, problems, overlap_tolerance_m2)
    _check_gaps(result.features, problems, gap_tolerance_m2)
    _check_containment(result.features, by_code, problems, containment_tolerance_m2)
    problems.sort(key=lambda p: p.severity != "error")  # stable: errors first, file order kept
    return result


def _error(code: str, feature: str | None, message: str, **extra) -> Problem:
    return Problem("error", code, feature, message, **extra)


def _warning(code: str, feature: str | None, message: str, **extra) -> Problem:
    return Problem("warning", code, feature, message, **extra)


def _parse_feature(index: int, item, problems: list[Problem]) -> LayerFeature | None:
    """Check one feature's properties and geometry; return it unless its identity is unusable."""
    label = f"feature #{index + 1}"
    if not isinstance(item, dict) or item.get("type") != "Feature":
        problems.append(_error("not_a_feature", None, f'{label} is not a GeoJSON "Feature"'))
        return None
    props = item.get("properties")
    if not isinstance(props, dict):
        problems.append(_error("missing_properties", None, f"{label} has no properties object"))
        return None

    code = props.get("code")
    if not isinstance(code, str) or not code.strip():
        problems.append(_error("missing_code", None, f'{label} needs a "code": a non-empty string'))
        return None
    bad_code = None
    if code != code.strip():
        bad_code = "has leading or trailing spaces"
    elif "/" in code:
        bad_code = 'contains "/", which separates codes in grid paths'
    elif len(code) > MAX_CODE_LENGTH:
        bad_code = f"is longer than {MAX_CODE_LENGTH} characters"
    if bad_code:
        problems.append(_error("bad_code", code, f"{label}: code {code!r} {bad_code}"))
        return None
    label = f"{label} ({code})"

    ok = True
    name = props.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(_error("missing_name", code, f'{label} needs a "name": a non-empty string'))
        ok = False
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(
            _error("bad_name", code, f"{label}: name is longer than {MAX_NAME_LENGTH} characters")
        )
        ok = False
    level = props.get("level")
    if level not in LEVELS:
        problems.append(
            _error(
                "unknown_level", code, f"{label}: level {level!r} is not one of {', '.join(LEVELS)}"
            )
        )
        ok = False
    parent = props.get("parent")
    if parent is not None and (not isinstance(parent, str) or not parent):
        problems.append(
            _error("bad_parent", code, f'{label}: "parent" must be another feature\'s code or null')
        )
        ok = False
    station = props.get("station")
    if station is not None and (not isinstance(station, str) or len(station) > MAX_NAME_LENGTH):
        problems.append(
            _error(
                "bad_station",
                code,
                f'{label}: "station" must be a string of at most {MAX_NAME_LENGTH} characters',
            )
        )
        ok = False
    contacts = props.get("contacts")
    if contacts is not None and not isinstance(contacts, dict | list):
        problems.append(
            _error("bad_contacts", code, f'{label}: "contacts" must be an object or an array')
        )
        ok = False

    feature = LayerFeature(
        index=index,
        code=code,
        name=name if isinstance(name, str) else "",
        level=level if level in LEVELS else "",
        parent=parent if isinstance(parent, str) else None,
        station=station if isinstance(station, str) else None,
        contacts=contacts if isinstance(contacts, dict | list) else None,
    )
    feature.geometry = _parse_geometry(label, code, item.get("geometry"), problems)
    if not ok:
        # Keep the code reserved (duplicates are still found) but take no further part.
        feature.level = ""
    return feature


def _parse_geometry(label: str, code: str, geometry, problems: list[Problem]):
    if not isinstance(geometry, dict) or "type" not in geometry:
        problems.append(_error("missing_geometry", code, f"{label} has no geometry"))
        return None
    kind = geometry.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        problems.append(
            _error(
                "bad_geometry_type",
                code,
                f"{label}: geometry is a {kind}; grid files need Polygon or MultiPolygon",
            )
        )
        return None
    try:
        geom = shapely.force_2d(shape(geometry))
    except Exception as exc:  # shapely/GEOS raise several types for malformed coordinates
        problems.append(
            _error("bad_geometry", code, f"{label}: the {kind} coordinates cannot be read ({exc})")
        )
        return None
    if geom.is_empty:
        problems.append(_error("empty_geometry", code, f"{label}: the {kind} is empty"))
        return None
    min_x, min_y, max_x, max_y = geom.bounds
    if not all(math.isfinite(v) for v in geom.bounds) or (
        min_x < -180 or max_x > 180 or min_y < -90 or max_y > 90
    ):
        problems.append(
            _error(
                "out_of_range",
                code,
                f"{label}: coordinates ({min_x:.6g}, {min_y:.6g}) … ({max_x:.6g}, "
                f"{max_y:.6g}) are not longitude/latitude in degrees; export the file in "
                "EPSG:4326 (or GCJ-02/BD-09 degrees with --crs)",
            )
        )
        return None
    if not geom.is_valid:
        problems.append(
            _error(
                "invalid_geometry",
                code,
                f"{label}: the {kind} is invalid: {explain_validity(geom)}; repair it "
                "(e.g. QGIS “Fix geometries”, or ST_MakeValid) and import again",
            )
        )
        return None
    return geom


def _check_hierarchy(
    features: list[LayerFeature], by_code: dict[str, LayerFeature], problems: list[Problem]
) -> None:
    towns_with_villages = {
        f.parent for f in features if f.level == "village" and f.parent is not None
    }
    for f in features:
        if not f.level:
            continue
        if f.level == "city":
            if f.parent is not None:
                problems.append(
                    _error(
                        "wrong_parent_level",
                        f.code,
                        f"city {f.code} has parent {f.parent!r}; a city is the top of the "
                        "hierarchy (parent null)",
                    )
                )
            continue
        allowed = _PARENT_LEVEL[f.level]
        if f.parent is None:
            problems.append(
                _error(
                    "missing_parent",
                    f.code,
                    f"{f.level} {f.code} has no parent; it needs a {' or '.join(allowed)}",
                )
            )
            continue
        parent = by_code.get(f.parent)
        if parent is None:
            problems.append(
                _error(
                    "unknown_parent",
                    f.code,
                    f"{f.level} {f.code} names parent {f.parent!r}, which is not in the file",
                )
            )
            continue
        if not parent.level:
            continue  # the parent already has its own error
        if parent.level not in allowed:
            problems.append(
                _error(
                    "wrong_parent_level",
                    f.code,
                    f"{f.level} {f.code} has parent {parent.code}, a {parent.level}; the "
                    f"parent of a {f.level} must be a {' or '.join(allowed)}",
                )
            )
        elif f.level == "grid" and parent.level == "town" and parent.code in towns_with_villages:
            problems.append(
                _error(
                    "wrong_parent_level",
                    f.code,
                    f"grid {f.code} hangs directly under town {parent.code}, which is split "
                    "into villages; put the grid under one of its villages",
                )
            )


def _usable(features: list[LayerFeature], level: str) -> list[LayerFeature]:
    return [f for f in features if f.level == level and f.geometry is not None]


def _m2(area_deg2, lat):
    """Convert an area in square degrees at latitude `lat` to square metres."""
    return area_deg2 * METRES_PER_DEGREE**2 * np.cos(np.radians(lat))


def _where(geom) -> tuple[float, float]:
    point = geom.representative_point() if not geom.is_empty else geom
    return round(point.x, 6), round(point.y, 6)


def _check_overlaps(
    features: list[LayerFeature], problems: list[Problem], tolerance_m2: float
) -> None:
    grids = _usable(features, "grid")
    if len(grids) < 2:
        return
    geoms = np.array([f.geometry for f in grids], dtype=object)
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    if not len(left):
        return
    shared = shapely.intersection(geoms[left], geoms[right])
    lat = shapely.get_y(shapely.centroid(geoms[left]))
    areas = _m2(shapely.area(shared), lat)
    found = np.flatnonzero(areas > tolerance_m2)
    for n, k in enumerate(found):
        if n == MAX_REPORTED_PER_KIND:
            problems.append(
                _error("overlap", None, f"… and {len(found) - n} more overlapping pairs of grids")
            )
            break
        a, b = grids[left[k]], grids[right[k]]
        lon_lat = _where(shared[k])
        problems.append(
            _error(
                "overlap",
                a.code,
                f"grids {a.code} and {b.code} overlap by {areas[k]:,.0f} m² near "
                f"lon {lon_lat[0]}, lat {lon_lat[1]}; a point there would belong to both",
                location=lon_lat,
                area_m2=float(areas[k]),
            )
        )


def _check_gaps(features: list[LayerFeature], problems: list[Problem], tolerance_m2: float) -> None:
    cities = _usable(features, "city")
    grids = _usable(features, "grid")
    if not cities or not grids:
        return
    city = shapely.union_all([f.geometry for f in cities])
    covered = shapely.union_all([f.geometry for f in grids])
    holes = shapely.get_parts(shapely.difference(city, covered))
    # Polygons only (a difference can leave lines); an empty result comes back as one empty part.
    holes = holes[(shapely.get_type_id(holes) == 3) & ~shapely.is_empty(holes)]
    if not len(holes):
        return
    areas = _m2(shapely.area(holes), shapely.get_y(shapely.centroid(holes)))
    found = np.flatnonzero(areas > tolerance_m2)
    for n, k in enumerate(found):
        if n == MAX_REPORTED_PER_KIND:
            rest = float(areas[found[n:]].sum())
            problems.append(
                _warning("gap", None, f"… and {len(found) - n} more gaps ({rest:,.0f} m² in all)")
            )
            break
        lon_lat = _where(holes[k])
        problems.append(
            _warning(
                "gap",
                None,
                f"an area of about {areas[k]:,.0f} m² inside the city near lon "
                f"{lon_lat[0]}, lat {lon_lat[1]} belongs to no grid; tips there go to "
                "the nearest grid or to the 'needs location' queue",
                location=lon_lat,
                area_m2=float(areas[k]),
            )
        )


def _check_containment(
    features: list[LayerFeature],
    by_code: dict[str, LayerFeature],
    problems: list[Problem],
    tolerance_m2: float,
) -> None:
    pairs = [
        (f, by_code[f.parent])
        for f in features
        if f.level in ("town", "village", "grid")
        and f.geometry is not None
        and f.parent in by_code
        and by_code[f.parent].geometry is not None
        and by_code[f.parent].level
    ]
    if not pairs:
        return
    children = np.array([c.geometry for c, _ in pairs], dtype=object)
    parents = np.array([p.geometry for _, p in pairs], dtype=object)
    outside = shapely.difference(children, parents)
    areas = _m2(shapely.area(outside), shapely.get_y(shapely.centroid(children)))
    found = np.flatnonzero(areas > tolerance_m2)
    for n, k in enumerate(found):
        if n == MAX_REPORTED_PER_KIND:
            problems.append(
                _warning(
                    "outside_parent",
                    None,
                    f"… and {len(found) - n} more features reaching outside their parent",
                )
            )
            break
        child, parent = pairs[k]
        lon_lat = _where(outside[k])
        problems.append(
            _warning(
                "outside_parent",
                child.code,
                f"{child.level} {child.code} reaches {areas[k]:,.0f} m² outside its "
                f"parent {parent.level} {parent.code} (near lon {lon_lat[0]}, lat "
                f"{lon_lat[1]})",
                location=lon_lat,
                area_m2=float(areas[k]),
            )
        )
