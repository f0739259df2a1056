"""Grid lookup: Tipline's in-process index against PostGIS, and 888 against 100,000 grids.

Run: .venv/bin/python bench/bench_grids.py [--points N] [--pg-points N] [--runs R]

Per point: GridIndex.locate over random points (uniform over the layer's bounding
box, so almost all fall inside a grid), against PostGIS on the local PostgreSQL:
the same 888 demo polygons in a dedicated database (tipline_bench_gis, created
and dropped here) with a GiST index, one prepared `ST_Contains` query per point
as a request would send it, and, for fairness, one batched query for all points
(against Tipline's vectorised locate_many). Then the 888-grid demo layer against
a 100,000-grid lattice at the same cell size. Runs interleave; medians are kept.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.grids.demo_layer import build_demo_layer
from app.grids.index import GridIndex
from bench.databases import temporary_database
from bench.report import PG_URL, absolute, compare, median, save

PER_POINT_SQL = (
    "SELECT code FROM grids WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint(%s, %s), 4326)) "
    "ORDER BY code LIMIT 1"
)
BATCH_SQL = (
    "SELECT p.i, min(g.code) FROM unnest(%s::float8[], %s::float8[]) WITH ORDINALITY "
    "AS p(x, y, i) JOIN grids g ON ST_Contains(g.geom, ST_SetSRID(ST_MakePoint(p.x, p.y), 4326)) "
    "GROUP BY p.i"
)


def demo_items() -> list[tuple[int, str, shapely.Geometry]]:
    """The 888 grid polygons of the demo layer."""
    feats = [f for f in build_demo_layer()["features"] if f["properties"]["level"] == "grid"]
    return [
        (k, f["properties"]["code"], shapely.geometry.shape(f["geometry"]))
        for k, f in enumerate(feats)
    ]


def lattice_index(columns: int, rows: int, seed: int = 1):
    """Index a jittered lattice of columns x rows quadrilaterals at the demo's cell size."""
    dx, dy = 0.3 / 37, 0.2 / 24
    west, south = 110.0, 30.0
    rng = np.random.default_rng(seed)
    xs = west + np.arange(columns + 1) * dx
    ys = south + np.arange(rows + 1) * dy
    vx, vy = np.meshgrid(xs, ys)
    jitter = rng.uniform(-0.2, 0.2, (2, rows + 1, columns + 1))
    vx[1:-1, 1:-1] += jitter[0, 1:-1, 1:-1] * dx
    vy[1:-1, 1:-1] += jitter[1, 1:-1, 1:-1] * dy
    v = np.stack([vx, vy], axis=-1)
    rings = np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, 1:], v[1:, :-1], v[:-1, :-1]], axis=2)
    polys = shapely.polygons(rings.reshape(-1, 5, 2))
    items = [(k, f"G{k:06d}", p) for k, p in enumerate(polys)]
    bounds = (west, south, west + columns * dx, south + rows * dy)
    return GridIndex.build(items), bounds


def sample(bounds, n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    min_x, min_y, max_x, max_y = bounds
    return [(rng.uniform(min_x, max_x), rng.uniform(min_y, max_y)) for _ in range(n)]


def run_once(index: GridIndex, points) -> float:
    locate = index.locate
    start = time.perf_counter()
    for x, y in points:
        locate(x, y)
    return (time.perf_counter() - start) / len(points) * 1e6


def postgis_runs(url: str, items, index: GridIndex, points, runs: int) -> dict[str, list[float]]:
    """Load the polygons with a GiST index; time PostGIS and Tipline, per point and batched."""
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    times: dict[str, list[float]] = {k: [] for k in ("tipline", "postgis", "tl_batch", "pg_batch")}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE grids (id int PRIMARY KEY, code text NOT NULL, "
            "geom geometry(Geometry, 4326) NOT NULL)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO grids VALUES (%s, %s, ST_GeomFromWKB(%s, 4326))",
                [(k, code, shapely.to_wkb(geom)) for k, code, geom in items],
            )
        conn.execute("CREATE INDEX grids_geom_gist ON grids USING gist (geom)")
        conn.execute("ANALYZE grids")

        def per_point() -> tuple[float, list]:
            found = []
            start = time.perf_counter()
            for x, y in points:
                found.append(conn.execute(PER_POINT_SQL, (x, y), prepare=True).fetchone())
            return (time.perf_counter() - start) / len(points) * 1e6, found

        def batched() -> float:
            start = time.perf_counter()
            conn.execute(BATCH_SQL, (xs.tolist(), ys.tolist()), prepare=True).fetchall()
            return (time.perf_counter() - start) / len(points) * 1e6

        def vectorised() -> float:
            start = time.perf_counter()
            index.locate_many(xs, ys)
            return (time.perf_counter() - start) / len(points) * 1e6

        _, found = per_point()  # warm-up, and the answers to check against Tipline's
        batched()
        hits = [index.locate(x, y, nearest_m=0) for x, y in points]
        agree = sum(
            (row[0] if row else None) == (hit.code if hit else None)
            for row, hit in zip(found, hits, strict=True)
        )
        for _ in range(runs):
            times["tipline"].append(run_once(index, points))
            times["postgis"].append(per_point()[0])
            times["tl_batch"].append(vectorised())
            times["pg_batch"].append(batched())
    times["agree"] = [agree / len(points)]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--pg-points", type=int, default=2_000, help="points per PostGIS run")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()

    t0 = time.perf_counter()
    items = demo_items()
    small = GridIndex.build(items)
    small_bounds = (122.35, 40.55, 122.65, 40.75)
    t1 = time.perf_counter()
    big, big_bounds = lattice_index(400, 250)
    t2 = time.perf_counter()
    print(
        f"built: {len(small)} grids in {(t1 - t0) * 1e3:.0f} ms (incl. making the demo layer), "
        f"{len(big):,} grids in {(t2 - t1) * 1e3:.0f} ms"
    )
    small_points = sample(small_bounds, args.points, 1)
    big_points = sample(big_bounds, args.points, 2)
    inside = sum(small.locate(x, y, nearest_m=0) is not None for x, y in small_points)
    print(f"{inside / len(small_points):.1%} of the 888-grid points fall in a grid")

    with temporary_database("tipline_bench_gis", args.pg_url, extensions=("postgis",)) as url:
        gis = postgis_runs(url, items, small, small_points[: args.pg_points], args.runs)

    run_once(small, small_points[:2000])  # warm up caches and thread-local buffers
    run_once(big, big_points[:2000])
    small_runs, big_runs, ratios = [], [], []
    for _ in range(args.runs):
        a = run_once(small, small_points)
        b = run_once(big, big_points)
        small_runs.append(a)
        big_runs.append(b)
        ratios.append(b / a)
    rows = [
        compare(
            "grid lookup, 888 grids, per point",
            median(gis["tipline"]),
            median(gis["postgis"]),
            "µs",
            "PostGIS ST_Contains, 1 query/point",
            goal=(">=", 10.0),
            invert=True,
            runs={k: gis[k] for k in ("tipline", "postgis")},
        ),
        compare(
            "grid lookup, 888 grids, batched",
            median(gis["tl_batch"]),
            median(gis["pg_batch"]),
            "µs",
            "PostGIS, 1 query for all points",
            invert=True,
            runs={k: gis[k] for k in ("tl_batch", "pg_batch")},
        ),
        compare(
            "grid lookup, 100,000 vs 888 grids",
            median(big_runs),
            median(small_runs),
            "µs",
            "888 grids",
            goal=("<=", 2.0),
            runs={"100k": big_runs, "888": small_runs, "ratio": ratios},
        ),
        absolute(
            "grid lookup, 888 grids, per point (20k pts)", median(small_runs), "µs", ("<=", 10.0)
        ),
    ]
    save(
        "grids",
        f"3. Grid lookup (medians of {args.runs} runs; PostGIS on {args.pg_points:,} points, "
        f"888 vs 100k on {args.points:,})",
        rows,
        settings=vars(args),
        notes=[
            f"PostGIS and Tipline name the same grid for {gis['agree'][0]:.1%} of the points "
            "(ties on shared edges: Tipline takes the lowest code, the query ORDER BY code)",
            f"fastest runs (least disturbed by the machine's other load): 888 grids "
            f"{min(small_runs):.2f} µs/point, 100,000 grids {min(big_runs):.2f} µs/point, "
            f"PostGIS {min(gis['postgis']):.0f} µs/point",
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
