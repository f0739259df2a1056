"""Benchmark the in-process grid lookup: µs per point, 888 demo grids and 100,000 grids.

Run: .venv/bin/python bench/bench_grids.py [--points N] [--runs R]

Each run times GridIndex.locate over the same random points (uniform over the
layer's bounding box, so almost all fall inside a grid) and divides by the
number of points; the figures are medians over the runs, with the two layers'
runs interleaved so both see the same machine noise. The PostGIS baseline
(ST_Contains with a GiST index) is a separate issue and not part of this script.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.grids.demo_layer import build_demo_layer
from app.grids.index import GridIndex

TARGET_US = 10.0
TARGET_RATIO = 2.0


def demo_index() -> tuple[GridIndex, tuple[float, float, float, float]]:
    """Index the 888 grids of the demo layer."""
    feats = [f for f in build_demo_layer()["features"] if f["properties"]["level"] == "grid"]
    items = [
        (k, f["properties"]["code"], shapely.geometry.shape(f["geometry"]))
        for k, f in enumerate(feats)
    ]
    return GridIndex.build(items), (122.35, 40.55, 122.65, 40.75)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    t0 = time.perf_counter()
    small, small_bounds = demo_index()
    t1 = time.perf_counter()
    big, big_bounds = lattice_index(400, 250)
    t2 = time.perf_counter()
    print(
        f"built: {len(small)} grids in {(t1 - t0) * 1e3:.0f} ms (incl. making the demo layer), "
        f"{len(big):,} grids in {(t2 - t1) * 1e3:.0f} ms"
    )

    small_points = sample(small_bounds, args.points, 1)
    big_points = sample(big_bounds, args.points, 2)
    hit_share = sum(small.locate(x, y, nearest_m=0) is not None for x, y in small_points)
    print(
        f"{args.points:,} points per run, {args.runs} runs; "
        f"{hit_share / len(small_points):.1%} of the 888-grid points fall in a grid"
    )

    run_once(small, small_points[:2000])  # warm up caches and thread-local buffers
    run_once(big, big_points[:2000])
    small_runs, big_runs, ratios = [], [], []
    for _ in range(args.runs):
        a = run_once(small, small_points)
        b = run_once(big, big_points)
        small_runs.append(a)
        big_runs.append(b)
        ratios.append(b / a)

    def show(label, runs):
        print(
            f"{label:>14}: median {statistics.median(runs):6.2f} µs/point "
            f"(min {min(runs):.2f}, max {max(runs):.2f})"
        )

    show("888 grids", small_runs)
    show("100,000 grids", big_runs)
    ratio = statistics.median(ratios)
    per_point = statistics.median(small_runs)
    print(f"{'ratio':>14}: {ratio:.2f}× (100k / 888, median of per-run ratios)")
    xs = np.array([p[0] for p in small_points])
    ys = np.array([p[1] for p in small_points])
    start = time.perf_counter()
    small.locate_many(xs, ys)
    bulk = (time.perf_counter() - start) / len(xs) * 1e6
    print(f"{'vectorised':>14}: {bulk:.2f} µs/point (locate_many, 888 grids, one run)")
    print(
        f"targets: ≤ {TARGET_US:g} µs/point → {'met' if per_point <= TARGET_US else 'MISSED'}; "
        f"100k ≤ {TARGET_RATIO:g}× 888 → {'met' if ratio <= TARGET_RATIO else 'MISSED'}"
    )
    print("PostGIS ST_Contains baseline: not part of this script (a later issue).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
