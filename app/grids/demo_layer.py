"""Build the synthetic demo city: one city, six districts, 96 communities, 888 grids.

Everything here is invented: names, boundaries and station names imitate the
shape of the reference city (888 basic grids, 6 police service stations), not
its real geography. Every feature carries `"synthetic": true`.

The grids are a 37 x 24 lattice over lon 122.35-122.65, lat 40.55-40.75 (cells
about 680 m x 930 m). Interior lattice vertices are moved by a seeded random
jitter so cells are irregular quadrilaterals; vertices on the city boundary
only slide along it and the four corners stay put. Neighbouring cells are
built from the very same vertex coordinates, so shared edges are exactly
shared: no gaps, no overlaps. Districts and communities are unions of their
grids, and the city is the union of everything (it covers the box exactly).
"""

from __future__ import annotations

import functools
import json
import random

import shapely
from shapely.geometry import Polygon

WEST, EAST, SOUTH, NORTH = 122.35, 122.65, 40.55, 40.75
COLUMNS, ROWS = 37, 24  # 888 grids
CITY_CODE = "C"
CITY_NAME = "示范市 (Demo City)"
_SEED = 20_261_101
_JITTER = 0.2  # of a cell, so quadrilaterals stay simple (< 0.5 keeps vertex order)
_DECIMALS = 7  # about 1 cm; rounding before building keeps shared vertices identical

# (code, Chinese name, gloss, column range, row range); rows count from the north.
_TOWNS = (
    ("T01", "北山街道", "Beishan Subdistrict, North Hill", (0, 12), (0, 12)),
    ("T02", "站前街道", "Zhanqian Subdistrict, Station Front", (12, 25), (0, 12)),
    ("T03", "东城街道", "Dongcheng Subdistrict, East Town", (25, 37), (0, 12)),
    ("T04", "西湖镇", "Xihu Town, West Lake", (0, 12), (12, 24)),
    ("T05", "南桥街道", "Nanqiao Subdistrict, South Bridge", (12, 25), (12, 24)),
    ("T06", "青松镇", "Qingsong Town, Green Pine", (25, 37), (12, 24)),
)
_COMMUNITIES = (
    ("柳树", "Liushu"),
    ("杏花", "Xinghua"),
    ("桃园", "Taoyuan"),
    ("新华", "Xinhua"),
    ("和平", "Heping"),
    ("长青", "Changqing"),
    ("光明", "Guangming"),
    ("幸福", "Xingfu"),
    ("红旗", "Hongqi"),
    ("建设", "Jianshe"),
    ("胜利", "Shengli"),
    ("朝阳", "Chaoyang"),
    ("民主", "Minzhu"),
    ("团结", "Tuanjie"),
    ("友谊", "Youyi"),
    ("永安", "Yong'an"),
)


def build_demo_layer() -> dict:
    """Return the demo city as a GeoJSON FeatureCollection in WGS-84 (a fresh copy each call)."""
    return json.loads(_demo_layer_json())


@functools.cache
def _demo_layer_json() -> str:
    vertices = _lattice_vertices()
    cells: dict[tuple[int, int], Polygon] = {}
    for row in range(ROWS):
        for col in range(COLUMNS):
            ring = [vertices[row][col], vertices[row + 1][col], vertices[row + 1][col + 1]]
            ring += [vertices[row][col + 1], vertices[row][col]]
            # Rows run north to south, so this ring is NW, SW, SE, NE: counter-clockwise.
            cells[row, col] = Polygon(ring)

    features: list[dict] = []
    city_members: list[Polygon] = []
    for t_index, (t_code, t_name, t_gloss, cols, rows) in enumerate(_TOWNS):
        town_short = t_name[:2]
        station = f"{town_short}警务服务站 ({t_gloss.split(',')[0].split()[0]} Police Station)"
        town_members: list[Polygon] = []
        town_features: list[dict] = []
        suffix, kind = ("村", "Village") if t_name.endswith("镇") else ("社区", "Community")
        col_chunks = _chunks(*cols)
        row_chunks = _chunks(*rows)
        v_index = 0
        for r0, r1 in row_chunks:
            for c0, c1 in col_chunks:
                v_index += 1
                v_code = f"V{t_index + 1:02d}{v_index:02d}"
                word, gloss = _COMMUNITIES[v_index - 1]
                v_name = f"{word}{suffix} ({gloss} {kind})"
                members = []
                grid_features = []
                for row in range(r0, r1):
                    for col in range(c0, c1):
                        number = row * COLUMNS + col + 1
                        members.append(cells[row, col])
                        grid_features.append(
                            _feature(
                                f"G{number:04d}",
                                f"{word}{suffix}第{len(members)}网格 (Grid {number})",
                                "grid",
                                v_code,
                                cells[row, col],
                                station=station,
                            )
                        )
                town_features.append(
                    _feature(v_code, v_name, "village", t_code, shapely.union_all(members))
                )
                town_features.extend(grid_features)
                town_members.extend(members)
        town = _feature(
            t_code,
            f"{t_name} ({t_gloss})",
            "town",
            CITY_CODE,
            shapely.union_all(town_members),
            station=station,
        )
        features.append(town)
        features.extend(town_features)
        city_members.extend(town_members)
    city = _feature(CITY_CODE, CITY_NAME, "city", None, shapely.union_all(city_members))
    collection = {
        "type": "FeatureCollection",
        "name": "tipline-demo-city",
        "features": [city, *features],
    }
    return json.dumps(collection, ensure_ascii=False, separators=(",", ":"))


def _lattice_vertices() -> list[list[tuple[float, float]]]:
    """Return the (ROWS + 1) x (COLUMNS + 1) jittered lattice, north row first."""
    rng = random.Random(_SEED)
    dx = (EAST - WEST) / COLUMNS
    dy = (NORTH - SOUTH) / ROWS
    grid: list[list[tuple[float, float]]] = []
    for row in range(ROWS + 1):
        line = []
        for col in range(COLUMNS + 1):
            jx = rng.uniform(-_JITTER, _JITTER) * dx
            jy = rng.uniform(-_JITTER, _JITTER) * dy
            if col in (0, COLUMNS):
                jx = 0.0  # stay on the west/east boundary
            if row in (0, ROWS):
                jy = 0.0  # stay on the north/south boundary
            x = EAST if col == COLUMNS else WEST + col * dx + jx
            y = SOUTH if row == ROWS else NORTH - row * dy + jy
            line.append((round(x, _DECIMALS), round(y, _DECIMALS)))
        grid.append(line)
    return grid


def _chunks(start: int, stop: int, size: int = 3) -> list[tuple[int, int]]:
    """Split [start, stop) into runs of `size`, the last run taking the remainder."""
    bounds = list(range(start, stop, size))
    if stop - bounds[-1] < size:
        bounds.pop()
    return [(a, b) for a, b in zip(bounds, [*bounds[1:], stop], strict=True)]


def _feature(code, name, level, parent, geom, *, station=None) -> dict:
    geom = shapely.orient_polygons(geom)  # RFC 7946: exterior rings counter-clockwise
    props = {"code": code, "name": name, "level": level, "parent": parent, "synthetic": True}
    if station is not None:
        props["station"] = station
    return {"type": "Feature", "properties": props, "geometry": _mapping(geom)}


def _mapping(geom) -> dict:
    def rings(poly):
        return [[list(c) for c in poly.exterior.coords]] + [
            [list(c) for c in hole.coords] for hole in poly.interiors
        ]

    if geom.geom_type == "Polygon":
        return {"type": "Polygon", "coordinates": rings(geom)}
    if geom.geom_type == "MultiPolygon":
        return {"type": "MultiPolygon", "coordinates": [rings(p) for p in geom.geoms]}
    raise ValueError(f"unexpected {geom.geom_type} in the demo layer")
