"""Small grid layers for tests that need routing but not the whole demo city."""

from __future__ import annotations

# Four 0.01° grids (about 850 m × 1.1 km) around the reference centre, in one village.
WEST, SOUTH, STEP = 122.49, 40.63, 0.01


def _box(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _feature(code: str, name: str, level: str, parent: str | None, geom: dict, **extra) -> dict:
    return {
        "type": "Feature",
        "geometry": geom,
        "properties": {"code": code, "name": name, "level": level, "parent": parent, **extra},
    }


def small_layer() -> dict:
    """Return a FeatureCollection: city C, town T1, village V1, grids G1..G4 (2 × 2)."""
    east, north = WEST + 2 * STEP, SOUTH + 2 * STEP
    features = [
        _feature("C", "测试市", "city", None, _box(WEST, SOUTH, east, north)),
        _feature("T1", "测试区", "town", "C", _box(WEST, SOUTH, east, north)),
        _feature("V1", "测试社区", "village", "T1", _box(WEST, SOUTH, east, north)),
    ]
    n = 0
    for row in range(2):
        for col in range(2):
            n += 1
            x0, y0 = WEST + col * STEP, SOUTH + row * STEP
            features.append(
                _feature(
                    f"G{n}",
                    f"网格{n}",
                    "grid",
                    "V1",
                    _box(x0, y0, x0 + STEP, y0 + STEP),
                    station="测试派出所",
                )
            )
    return {"type": "FeatureCollection", "features": features}


def centre_of(code: str) -> tuple[float, float]:
    """Return (lat, lon) of the middle of grid G1..G4."""
    n = int(code[1:]) - 1
    row, col = divmod(n, 2)
    return SOUTH + (row + 0.5) * STEP, WEST + (col + 0.5) * STEP


def seed_small(session_factory) -> None:
    """Commit the categories and the small layer: what routing a tip needs, and no more."""
    from app.db import unit_of_work
    from app.grids.services import import_layer
    from app.reports.categories import seed_categories

    with unit_of_work(session_factory) as s:
        seed_categories(s)
        import_layer(s, small_layer(), crs="wgs84", replace=False, source_name="small")
