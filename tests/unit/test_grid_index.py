"""GridIndex: inside, shared edges and vertices, nearest in metres, neighbours."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import shapely
from shapely.geometry import box, shape

from app.grids.demo_layer import build_demo_layer
from app.grids.index import METRES_PER_DEGREE, NEIGHBOUR_RADIUS_CAP_M, GridIndex

LAT = 40.6
COS = math.cos(math.radians(LAT))
CELL = 0.01  # degrees


def cells(codes_ids):
    """Return a row of CELL-sized squares at LAT, one per (grid_id, code), west to east."""
    return [
        (gid, code, box(122.0 + k * CELL, LAT, 122.0 + (k + 1) * CELL, LAT + CELL))
        for k, (gid, code) in enumerate(codes_ids)
    ]


@pytest.fixture(scope="module")
def demo():
    """The demo layer's grids as (id, code, polygon), and the index over them."""
    feats = [f for f in build_demo_layer()["features"] if f["properties"]["level"] == "grid"]
    items = [(1000 + k, f["properties"]["code"], shape(f["geometry"])) for k, f in enumerate(feats)]
    return items, GridIndex.build(items)


def random_points_in(poly, rng: random.Random, n: int) -> list[tuple[float, float]]:
    """Return n uniform random points strictly inside poly (rejection sampling)."""
    min_x, min_y, max_x, max_y = poly.bounds
    out = []
    while len(out) < n:
        x, y = rng.uniform(min_x, max_x), rng.uniform(min_y, max_y)
        if poly.contains(shapely.Point(x, y)):
            out.append((x, y))
    return out


def test_a_point_inside_one_grid_is_inside():
    index = GridIndex.build(cells([(7, "A"), (8, "B")]))
    hit = index.locate(122.005, LAT + 0.005)
    assert (hit.grid_id, hit.code, hit.reason, hit.distance_m) == (7, "A", "inside", 0.0)
    assert index.locate(122.015, LAT + 0.005).code == "B"


@pytest.mark.parametrize("order", [[(1, "B"), (2, "A")], [(2, "A"), (1, "B")]])
def test_a_shared_edge_goes_to_the_lowest_code_whatever_the_order_and_ids(order):
    squares = cells(order)
    index = GridIndex.build(squares)
    x_shared = squares[0][2].bounds[2]  # east edge of the first square = west edge of second
    hit = index.locate(x_shared, LAT + 0.005)
    assert hit.reason == "edge"
    assert hit.code == "A"
    assert GridIndex.build(list(reversed(squares))).locate(x_shared, LAT + 0.005) == hit


def test_a_shared_vertex_goes_to_the_lowest_code():
    quads = [
        (10 + i, code, box(x, y, x + 1, y + 1))
        for i, (code, x, y) in enumerate([("Q4", 0, 0), ("Q2", 1, 0), ("Q3", 0, 1), ("Q9", 1, 1)])
    ]
    hit = GridIndex.build(quads).locate(1.0, 1.0)
    assert (hit.code, hit.reason) == ("Q2", "edge")


def test_nearest_is_measured_in_metres_not_degrees():
    index = GridIndex.build(cells([(1, "A")]))
    east = index.locate(122.01 + 0.003, LAT + 0.005, nearest_m=300)  # 0.003° east ≈ 253 m
    assert east.reason == "nearest"
    assert east.distance_m == pytest.approx(0.003 * METRES_PER_DEGREE * COS, rel=0.01)
    # The same 0.003° to the north is 334 m: too far.
    assert index.locate(122.005, LAT + CELL + 0.003, nearest_m=300) is None
    assert index.locate(122.005, LAT + CELL + 0.003, nearest_m=400).reason == "nearest"
    assert index.locate(122.005, LAT + CELL + 0.003, nearest_m=0) is None


def test_nearest_prefers_the_closer_grid_then_the_lower_code():
    gap = 0.002
    left = box(122.0, LAT, 122.01, LAT + CELL)
    right = box(122.01 + gap, LAT, 122.02 + gap, LAT + CELL)
    index = GridIndex.build([(1, "Z", left), (2, "B", right)])
    assert index.locate(122.0102, LAT + 0.005).code == "Z"  # closer to the left one
    assert index.locate(122.0118, LAT + 0.005).code == "B"
    # Exactly halfway (binary fractions, so both distances are the same float): lowest code.
    far_apart = [(1, "Z", box(122.0, 40.0, 122.5, 40.5)), (2, "B", box(123.0, 40.0, 123.5, 40.5))]
    halfway = GridIndex.build(far_apart).locate(122.75, 40.25, nearest_m=30_000)
    assert (halfway.code, halfway.reason) == ("B", "nearest")


def test_outside_everything_and_off_the_globe():
    index = GridIndex.build(cells([(1, "A")]))
    assert index.locate(0.0, 0.0) is None
    assert index.locate(math.nan, LAT) is None
    assert index.locate(181.0, LAT) is None


def test_neighbours_are_the_other_grids_the_accuracy_circle_touches():
    index = GridIndex.build(cells([(1, "A"), (2, "B"), (3, "C")]))
    near_b = 122.019 - 150 / (METRES_PER_DEGREE * COS)  # in B, ~150 m west of C
    assert index.locate(near_b + 0.0, LAT + 0.005).neighbours == ()
    assert index.locate(near_b, LAT + 0.005, accuracy_m=100).neighbours == ()
    assert index.locate(near_b, LAT + 0.005, accuracy_m=300).neighbours == ("C",)
    wide = index.locate(near_b, LAT + 0.005, accuracy_m=50_000)
    assert wide.code == "B"
    assert wide.neighbours == ("A", "C")  # the circle is capped, but A and C are within it


def test_the_accuracy_circle_is_capped():
    row = cells([(k, f"G{k:02d}") for k in range(20)])  # 20 cells of ~845 m
    hit = GridIndex.build(row).locate(122.105, LAT + 0.005, accuracy_m=10_000)
    reach = NEIGHBOUR_RADIUS_CAP_M / (METRES_PER_DEGREE * COS) / CELL
    assert len(hit.neighbours) == 2 * math.ceil(reach - 0.5)


def test_codes_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        GridIndex.build([(1, "A", box(0, 0, 1, 1)), (2, "A", box(1, 0, 2, 1))])


def test_every_sampled_demo_point_routes_to_its_own_grid(demo):
    items, index = demo
    rng = random.Random(888)
    checked = 0
    for grid_id, code, poly in items:
        points = [poly.representative_point().coords[0], *random_points_in(poly, rng, 2)]
        for x, y in points:
            hit = index.locate(x, y)
            assert (hit.grid_id, hit.code, hit.reason) == (grid_id, code, "inside")
            checked += 1
    assert checked == 3 * 888


def test_demo_lattice_vertices_resolve_to_the_lowest_code(demo):
    items, index = demo
    by_code = {code: poly for _, code, poly in items}
    vertex_use: dict[tuple[float, float], list[str]] = {}
    for code, poly in by_code.items():
        for xy in poly.exterior.coords[:-1]:
            vertex_use.setdefault(xy, []).append(code)
    interior = [(xy, codes) for xy, codes in vertex_use.items() if len(codes) == 4]
    assert len(interior) == 36 * 23
    for (x, y), codes in interior:
        hit = index.locate(x, y)
        assert (hit.reason, hit.code) == ("edge", min(codes))
    corner = index.locate(122.35, 40.75)  # the city's north-west corner: one grid only
    assert (corner.code, corner.reason) == ("G0001", "inside")


def test_locate_many_agrees_with_locate(demo):
    _, index = demo
    rng = np.random.default_rng(7)
    xs = rng.uniform(122.34, 122.66, 3000)
    ys = rng.uniform(40.54, 40.76, 3000)
    bulk = index.locate_many(xs, ys)
    for x, y, grid_id in zip(xs, ys, bulk, strict=True):
        hit = index.locate(x, y, nearest_m=0)
        assert grid_id == (hit.grid_id if hit else -1)
