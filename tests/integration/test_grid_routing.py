"""Import grid layers and route points through the service, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import math
import random
import threading
from collections.abc import Callable

import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import read_only
from app.errors import DomainError
from app.grids import services
from app.grids.datum import wgs84_to_bd09, wgs84_to_gcj02
from app.grids.demo_layer import EAST, NORTH, SOUTH, WEST, build_demo_layer
from app.grids.index import METRES_PER_DEGREE
from app.grids.models import Grid, GridLayer
from app.grids.services import (
    InvalidLocation,
    LayerExists,
    LayerInvalid,
    describe_grid,
    grid_subtree_ids,
    import_layer,
    lookup_grid,
    route_point,
)

MID_LAT = (SOUTH + NORTH) / 2
M_PER_DEG_LON = METRES_PER_DEGREE * math.cos(math.radians(MID_LAT))


@pytest.fixture(scope="module")
def demo() -> dict:
    return build_demo_layer()


@pytest.fixture(scope="module")
def demo_grids(demo) -> dict[str, shapely.Polygon]:
    """The demo grids' WGS-84 polygons by code: the ground truth for every datum."""
    return {
        f["properties"]["code"]: shape(f["geometry"])
        for f in demo["features"]
        if f["properties"]["level"] == "grid"
    }


@pytest.fixture(scope="module")
def samples(demo_grids) -> list[tuple[str, float, float]]:
    """About 2,000 (code, lon, lat) points: for 400 grids, an interior point and 4 random ones.

    Points closer than 2 m to their grid's edge are left out: a polygon drawn with
    straight edges in one datum has slightly curved edges in another (up to ~1 m
    for BD-09 at this cell size), so the datum tests would otherwise be testing
    that curvature rather than the routing.
    """
    rng = random.Random(20261)
    out = []
    for code in rng.sample(sorted(demo_grids), 400):
        poly = demo_grids[code]
        rep = poly.representative_point()
        out.append((code, rep.x, rep.y))
        min_x, min_y, max_x, max_y = poly.bounds
        taken = 0
        while taken < 4:
            x, y = rng.uniform(min_x, max_x), rng.uniform(min_y, max_y)
            point = shapely.Point(x, y)
            if poly.contains(point) and poly.exterior.distance(point) * M_PER_DEG_LON > 2:
                out.append((code, x, y))
                taken += 1
    return out


def transformed(collection: dict, fn: Callable[[float, float], tuple[float, float]]) -> dict:
    """Return a copy of a FeatureCollection with every vertex moved by fn (e.g. WGS → GCJ)."""
    out = copy.deepcopy(collection)
    for feature in out["features"]:
        geometry = feature["geometry"]
        polygons = (
            [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
        )
        for polygon in polygons:
            for ring in polygon:
                ring[:] = [list(fn(x, y)) for x, y in ring]
    return out


def small_layer(prefix: str = "N", town: str = "T_1") -> dict:
    """A two-grid layer over the demo area, with codes unlike the demo's."""
    west = shapely.box(WEST, SOUTH, (WEST + EAST) / 2, NORTH)
    east = shapely.box((WEST + EAST) / 2, SOUTH, EAST, NORTH)
    city = shapely.box(WEST, SOUTH, EAST, NORTH)

    def feat(code, level, parent, geom):
        return {
            "type": "Feature",
            "geometry": shapely.geometry.mapping(geom),
            "properties": {"code": code, "name": f"{code} name", "level": level, "parent": parent},
        }

    return {
        "type": "FeatureCollection",
        "features": [
            feat(f"{prefix}C", "city", None, city),
            feat(town, "town", f"{prefix}C", west),
            feat("TX1", "town", f"{prefix}C", east),
            feat(f"{prefix}W", "grid", town, west),
            feat(f"{prefix}E", "grid", "TX1", east),
        ],
    }


def import_demo(
    session: Session, collection: dict, *, crs: str = "wgs84", replace: bool = False
) -> services.ImportResult:
    return import_layer(
        session, collection, crs=crs, replace=replace, source_name="demo.geojson", synthetic=True
    )


def test_import_stores_the_hierarchy_and_routing_returns_it(session, demo):
    result = import_demo(session, demo)
    session.commit()
    assert (
        result.version,
        result.crs,
        result.grid_count,
        result.feature_count,
        result.replaced_version,
        result.warnings,
    ) == (1, "wgs84", 888, 991, None, [])
    assert result.counts == {"city": 1, "town": 6, "village": 96, "grid": 888}
    assert (result.version, result.warnings) == (1, [])

    layer = session.scalars(select(GridLayer)).one()
    assert (layer.active, layer.synthetic, layer.feature_count) == (True, True, 991)
    counts = dict(session.execute(select(Grid.level, func.count()).group_by(Grid.level)).all())
    assert counts == {"city": 1, "town": 6, "village": 96, "grid": 888}

    grid = session.scalars(select(Grid).where(Grid.code == "G0456")).one()
    chain = [grid]
    while chain[-1].parent_id is not None:
        chain.append(session.get(Grid, chain[-1].parent_id))
    assert [g.level for g in chain] == ["grid", "village", "town", "city"]
    assert grid.path == "/".join(g.code for g in reversed(chain))
    assert grid.station and grid.station.endswith("Police Station)")
    assert (grid.min_lon, grid.max_lat) == shapely.from_wkb(grid.geometry).bounds[::3]

    centre = route_point(session, 40.6406, 122.5052, 25.0)
    assert centre.reason == "inside"
    assert centre.layer_version == 1
    assert [p["level"] for p in centre.path] == ["city", "town", "village", "grid"]
    assert centre.path[-1] == {"code": centre.code, "name": centre.name, "level": "grid"}
    assert centre.grid_json() == {"code": centre.code, "name": centre.name, "path": centre.path}
    assert describe_grid(session, centre.grid_id) == {**centre.grid_json(), "layer_version": 1}


def test_sampled_points_route_to_exactly_their_grid(session, demo, demo_grids, samples):
    import_demo(session, demo)
    for code, x, y in samples:
        placement = route_point(session, y, x, None)
        assert (placement.code, placement.reason) == (code, "inside")
        assert demo_grids[placement.code].contains(shapely.Point(x, y))
    assert len(samples) == 2000


def test_shared_edges_and_vertices_go_to_the_lowest_code(session, demo, demo_grids):
    import_demo(session, demo)
    uses: dict[tuple[float, float], list[str]] = {}
    for code, poly in demo_grids.items():
        for xy in poly.exterior.coords[:-1]:
            uses.setdefault(xy, []).append(code)
    shared = sorted(xy for xy, codes in uses.items() if len(codes) > 1)
    for x, y in random.Random(3).sample(shared, 200):
        placement = route_point(session, y, x, None)
        assert (placement.reason, placement.code) == ("edge", min(uses[x, y]))
    # The same answer after the router is rebuilt from the database.
    x, y = shared[len(shared) // 2]
    before = route_point(session, y, x, None)
    services.clear_router_cache()
    assert route_point(session, y, x, None) == before


def test_outside_the_area_nearest_within_300_m_else_outside(session, demo):
    import_demo(session, demo)
    lat = 40.6406
    west_100 = WEST - 100 / M_PER_DEG_LON
    near = route_point(session, lat, west_100, None)
    assert near.reason == "nearest"
    assert near.distance_m == pytest.approx(100, abs=2)
    assert near.code == route_point(session, lat, WEST + 1e-6, None).code
    assert route_point(session, lat, WEST - 400 / M_PER_DEG_LON, None).reason == "outside_area"
    assert route_point(session, lat, west_100, None, nearest_m=50).reason == "outside_area"
    assert route_point(session, 0.0, 0.0, None).reason == "outside_area"
    assert route_point(session, None, None, None).reason == "no_location"
    assert route_point(session, lat, None, 10.0).grid_id is None
    vague = route_point(session, lat, 122.5052, 20_000.0, max_accuracy_m=10_000)
    assert (vague.reason, vague.grid_id) == ("low_accuracy", None)
    # The lookup endpoint is strict: no nearest fallback.
    assert lookup_grid(session, lat, west_100) is None
    assert lookup_grid(session, lat, 122.5052).reason == "inside"


def test_no_layer_and_invalid_coordinates(session):
    assert route_point(session, 40.6406, 122.5052, None).reason == "no_layer"
    assert lookup_grid(session, 40.6406, 122.5052) is None
    for lat, lon, acc, field in [
        (91.0, 122.5, None, "latitude"),
        (40.6, 181, None, "longitude"),
        (math.nan, 122.5, None, "latitude"),
        (40.6, 122.5, -1, "accuracy_m"),
        (40.6, "122.5", None, "longitude"),
    ]:
        with pytest.raises(InvalidLocation) as caught:
            route_point(session, lat, lon, acc)
        assert field in caught.value.fields


def test_a_gcj02_layer_routes_wgs84_points_to_the_grid_they_are_really_in(session, demo, samples):
    gcj = transformed(demo, wgs84_to_gcj02)
    import_demo(session, gcj, crs="gcj02")
    for code, x, y in samples:
        assert route_point(session, y, x, None).code == code

    # The mistake the datum field prevents: the same polygons imported as if WGS-84.
    import_demo(session, gcj, crs="wgs84", replace=True)
    wrong = sum(route_point(session, y, x, None).code != code for code, x, y in samples)
    assert 0.6 < wrong / len(samples) < 0.8  # about 70 %: the shift is ~470 m, cells ~700 m


def test_a_bd09_layer_routes_wgs84_points_to_the_grid_they_are_really_in(session, demo, samples):
    bd = transformed(demo, wgs84_to_bd09)
    result = import_demo(session, bd, crs="bd09")
    assert result.warnings == []
    for code, x, y in samples:
        assert route_point(session, y, x, None).code == code
    import_demo(session, bd, crs="wgs84", replace=True)
    wrong = sum(route_point(session, y, x, None).code != code for code, x, y in samples)
    assert wrong / len(samples) > 0.9  # BD-09 adds ~1 km more: nearly every point


@pytest.mark.parametrize(
    ("damage", "problem", "words"),
    [
        ("overlap", "overlap", "overlap by"),
        ("unknown_parent", "unknown_parent", "names parent 'V9999', which is not in the file"),
        ("duplicate", "duplicate_code", "reuses code 'G0002'"),
    ],
)
def test_import_refuses_broken_files_and_stores_nothing(session, demo, damage, problem, words):
    broken = copy.deepcopy(demo)
    grids = [f for f in broken["features"] if f["properties"]["level"] == "grid"]
    if damage == "overlap":
        grids[1]["geometry"] = copy.deepcopy(grids[0]["geometry"])
    elif damage == "unknown_parent":
        grids[5]["properties"]["parent"] = "V9999"
    else:
        grids[2]["properties"]["code"] = "G0002"
    with pytest.raises(LayerInvalid) as caught:
        import_demo(session, broken)
    assert caught.value.code == "layer_invalid"
    assert problem in [p.code for p in caught.value.problems]
    assert words in caught.value.message
    assert "nothing was imported" in caught.value.message
    assert session.scalar(select(func.count()).select_from(GridLayer)) == 0
    assert session.scalar(select(func.count()).select_from(Grid)) == 0


def test_a_second_import_needs_replace_and_routing_follows_the_new_version(session, demo):
    import_demo(session, demo)
    session.commit()
    with pytest.raises(LayerExists) as caught:
        import_demo(session, small_layer())
    assert caught.value.code == "layer_exists"
    assert "--replace" in caught.value.message
    with pytest.raises(DomainError) as bad_crs:
        import_layer(session, demo, crs="epsg3857", replace=True, source_name="x")
    assert bad_crs.value.code == "invalid_crs"

    before = route_point(session, 40.6406, 122.5052, None)
    assert (before.layer_version, before.code[0]) == (1, "G")
    result = import_layer(
        session, small_layer(), crs="wgs84", replace=True, source_name="new.geojson"
    )
    session.commit()
    assert (result.version, result.replaced_version, result.grid_count) == (2, 1, 2)
    layers = session.execute(
        select(GridLayer.version, GridLayer.active).order_by(GridLayer.version)
    ).all()
    assert layers == [(1, False), (2, True)]
    assert session.get(Grid, before.grid_id) is not None  # old grids kept for old tips

    after = route_point(session, 40.6406, 122.5052, None)
    assert (after.layer_version, after.code) == (2, "NE")
    assert [p["code"] for p in after.path] == ["NC", "TX1", "NE"]  # grid directly under a town
    assert describe_grid(session, before.grid_id)["layer_version"] == 1


def test_subtrees_by_path_prefix(session, demo):
    import_demo(session, demo)
    town = grid_subtree_ids(session, "T01")
    grids = grid_subtree_ids(session, "T01", level="grid")
    assert len(town) == 1 + 16 + 144 and len(grids) == 144
    paths = session.scalars(select(Grid.path).where(Grid.id.in_(town))).all()
    assert all(p == "C/T01" or p.startswith("C/T01/") for p in paths)
    assert grid_subtree_ids(session, "V0101", level="grid") == sorted(
        session.scalars(select(Grid.id).where(Grid.path.like("C/T01/V0101/%")))
    )
    assert grid_subtree_ids(session, "nope") == []

    # "_" in a code is not a LIKE wildcard: T_1's subtree does not reach into TX1's.
    import_layer(session, small_layer(town="T_1"), crs="wgs84", replace=True, source_name="s")
    t_1 = grid_subtree_ids(session, "T_1")
    codes = session.scalars(select(Grid.code).where(Grid.id.in_(t_1))).all()
    assert sorted(codes) == ["NW", "T_1"]
    # Across layer versions, for staff scoped to a code that outlived a replacement.
    assert len(grid_subtree_ids(session, "T01", all_layers=True)) == len(town)


def test_concurrent_first_lookups_build_the_router_once(session, engine, demo, monkeypatch):
    import_demo(session, demo)
    session.commit()
    services.clear_router_cache()
    builds = []
    real_build = services._build_router

    def counting_build(*args, **kwargs):
        builds.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(services, "_build_router", counting_build)
    barrier = threading.Barrier(6)
    results, errors = [], []

    def work():
        try:
            with Session(read_only(engine)) as s:
                barrier.wait()
                results.append(route_point(s, 40.6406, 122.5052, None).code)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and len(results) == 6
    assert len(builds) == 1
