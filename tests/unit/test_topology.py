"""The grid-file check: every rule, with messages a person can act on."""

from __future__ import annotations

import math

import pytest
from shapely.geometry import shape

from app.grids.demo_layer import COLUMNS, ROWS, build_demo_layer
from app.grids.topology import METRES_PER_DEGREE, check_features, check_layer

LAT = 40.6


def square(x0, y0, x1, y1) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def feature(code, level, parent, geometry, **extra) -> dict:
    props = {"code": code, "name": f"name of {code}", "level": level, "parent": parent, **extra}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def tiny_city(*grids: dict, villages: bool = True) -> dict:
    """A city of one town (one village unless villages=False) holding the given grids."""
    area = square(122.0, LAT, 122.02, LAT + 0.01)
    feats = [feature("C", "city", None, area), feature("T1", "town", "C", area)]
    if villages:
        feats.append(feature("V1", "village", "T1", area))
    return {"type": "FeatureCollection", "features": feats + list(grids)}


def two_grids(parent="V1") -> list[dict]:
    return [
        feature("G1", "grid", parent, square(122.0, LAT, 122.01, LAT + 0.01)),
        feature("G2", "grid", parent, square(122.01, LAT, 122.02, LAT + 0.01)),
    ]


def codes(problems, severity=None) -> list[str]:
    return [p.code for p in problems if severity is None or p.severity == severity]


def m2(deg2: float, lat: float = LAT + 0.005) -> float:
    return deg2 * METRES_PER_DEGREE**2 * math.cos(math.radians(lat))


def test_the_demo_layer_is_clean():
    fc = build_demo_layer()
    assert check_features(fc) == []
    levels = [f["properties"]["level"] for f in fc["features"]]
    assert levels.count("grid") == COLUMNS * ROWS == 888
    assert levels.count("city") == 1
    assert levels.count("town") >= 6
    assert all(f["properties"]["synthetic"] is True for f in fc["features"])
    stations = {
        f["properties"]["station"] for f in fc["features"] if f["properties"]["level"] == "grid"
    }
    assert len(stations) == 6
    city = shape(fc["features"][0]["geometry"])
    assert city.bounds == (122.35, 40.55, 122.65, 40.75)
    assert city.area == pytest.approx(0.3 * 0.2, rel=1e-9)
    assert build_demo_layer() == fc  # deterministic


def test_a_small_well_formed_file_is_clean():
    assert check_features(tiny_city(*two_grids())) == []


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"type": "Feature"},
        {"type": "FeatureCollection"},
        {"type": "FeatureCollection", "features": {}},
        "x",
    ],
)
def test_not_a_feature_collection(doc):
    problems = check_features(doc)
    assert codes(problems) == ["not_feature_collection"]
    assert "FeatureCollection" in problems[0].message


def test_missing_and_invalid_properties():
    bad = [
        {"type": "Feature", "geometry": square(0, 0, 1, 1)},
        feature("", "grid", "V1", square(0, 0, 1, 1)),
        feature("A/B", "grid", "V1", square(0, 0, 1, 1)),
        feature("G3", "grid", 5, square(0, 0, 1, 1)),
        feature("G4", "district", "V1", square(0, 0, 1, 1)),
        feature("G5", "grid", "V1", square(0, 0, 1, 1), station=7),
        feature("G6", "grid", "V1", square(0, 0, 1, 1), contacts="call 110"),
        {
            "type": "Feature",
            "properties": {"code": "G7", "level": "grid", "parent": "V1"},
            "geometry": square(0, 0, 1, 1),
        },
        ["not", "a", "feature"],
    ]
    problems = check_features(tiny_city(*two_grids(), *bad))
    assert codes(problems, "error") == [
        "missing_properties",
        "missing_code",
        "bad_code",
        "bad_parent",
        "unknown_level",
        "bad_station",
        "bad_contacts",
        "missing_name",
        "not_a_feature",
    ]
    by_code = {p.code: p for p in problems}
    assert "feature #7" in by_code["missing_code"].message
    assert '"/"' in by_code["bad_code"].message
    assert "'district'" in by_code["unknown_level"].message
    assert "city, town, village, grid" in by_code["unknown_level"].message


def test_duplicate_codes_are_refused_naming_both_features():
    dup = feature("G1", "grid", "V1", square(122.0, LAT, 122.005, LAT + 0.005))
    problems = check_features(tiny_city(*two_grids(), dup))
    assert codes(problems, "error") == ["duplicate_code"]
    assert "feature #6 reuses code 'G1' of feature #4" in problems[0].message


def test_geometry_problems_are_explained():
    bowtie = {
        "type": "Polygon",
        "coordinates": [
            [[122.0, LAT], [122.01, LAT + 0.01], [122.01, LAT], [122.0, LAT + 0.01], [122.0, LAT]]
        ],
    }
    projected = square(13_580_000, 4_950_000, 13_581_000, 4_951_000)
    bad = [
        feature("P1", "grid", "V1", {"type": "Point", "coordinates": [122.0, LAT]}),
        feature("P2", "grid", "V1", bowtie),
        feature("P3", "grid", "V1", projected),
        feature("P4", "grid", "V1", None),
        feature("P5", "grid", "V1", {"type": "Polygon", "coordinates": [[[1, 2]]]}),
        feature("P6", "grid", "V1", {"type": "Polygon", "coordinates": []}),
    ]
    problems = check_features(tiny_city(*two_grids(), *bad))
    by_feature = {p.feature: p for p in problems}
    assert by_feature["P1"].code == "bad_geometry_type"
    assert "Point" in by_feature["P1"].message
    assert by_feature["P2"].code == "invalid_geometry"
    assert "Self-intersection" in by_feature["P2"].message
    assert by_feature["P3"].code == "out_of_range"
    assert "EPSG:4326" in by_feature["P3"].message
    assert by_feature["P4"].code == "missing_geometry"
    assert by_feature["P5"].code == "bad_geometry"
    assert by_feature["P6"].code == "empty_geometry"
    assert all(p.severity == "error" for p in problems)


def test_unknown_and_missing_parents():
    orphan = feature("G3", "grid", "V9", square(122.05, LAT, 122.051, LAT + 0.001))
    rootless = feature("T2", "town", None, square(122.05, LAT, 122.051, LAT + 0.001))
    problems = check_features(tiny_city(*two_grids(), orphan, rootless))
    assert codes(problems, "error") == ["unknown_parent", "missing_parent"]
    assert "'V9', which is not in the file" in problems[0].message
    assert "needs a city" in problems[1].message


@pytest.mark.parametrize(
    ("level", "parent", "why"),
    [
        ("village", "C", "must be a town"),
        ("grid", "C", "must be a village or town"),
        ("grid", "G1", "must be a village or town"),
        ("town", "V1", "must be a city"),
        ("grid", "T1", "split into villages"),
    ],
)
def test_parents_of_the_wrong_level(level, parent, why):
    stray = feature("X1", level, parent, square(122.05, LAT, 122.051, LAT + 0.001))
    problems = check_features(tiny_city(*two_grids(), stray))
    assert codes(problems, "error") == ["wrong_parent_level"]
    assert why in problems[0].message


def test_grids_may_hang_under_a_town_without_villages():
    assert check_features(tiny_city(*two_grids(parent="T1"), villages=False)) == []


def test_a_city_with_a_parent_and_a_file_without_grids():
    fc = tiny_city()
    fc["features"][0]["properties"]["parent"] = "T1"
    assert codes(check_features(fc), "error") == ["no_grids", "wrong_parent_level"]


def test_overlapping_grids_are_refused_with_the_overlap_in_square_metres():
    grids = [
        feature("G1", "grid", "V1", square(122.0, LAT, 122.011, LAT + 0.01)),
        feature("G2", "grid", "V1", square(122.01, LAT, 122.02, LAT + 0.01)),
    ]
    problems = check_features(tiny_city(*grids))
    assert codes(problems) == ["overlap"]
    overlap = problems[0]
    assert overlap.severity == "error"
    assert overlap.area_m2 == pytest.approx(m2(0.001 * 0.01), rel=0.01)  # ≈ 93,900 m²
    assert "grids G1 and G2 overlap by 93," in overlap.message
    assert overlap.location[0] == pytest.approx(122.0105, abs=0.001)


def test_a_sliver_below_the_tolerance_is_not_an_overlap():
    grids = [
        feature("G1", "grid", "V1", square(122.0, LAT, 122.01 + 1e-8, LAT + 0.01)),
        feature("G2", "grid", "V1", square(122.01, LAT, 122.02, LAT + 0.01)),
    ]
    assert check_features(tiny_city(*grids)) == []  # ≈ 0.09 m²


def test_a_gap_in_the_city_is_a_warning_with_its_place_and_area():
    fc = build_demo_layer()
    hole = next(f for f in fc["features"] if f["properties"]["code"] == "G0500")
    fc["features"].remove(hole)
    result = check_layer(fc)
    assert result.ok
    assert codes(result.problems) == ["gap"]
    gap = result.problems[0]
    expected = shape(hole["geometry"])
    assert gap.area_m2 == pytest.approx(m2(expected.area, expected.centroid.y), rel=0.01)
    assert expected.contains(shape({"type": "Point", "coordinates": gap.location}))
    assert "belongs to no grid" in gap.message


def test_a_feature_reaching_outside_its_parent_is_a_warning():
    grids = [*two_grids(), feature("G3", "grid", "V1", square(122.02, LAT, 122.03, LAT + 0.01))]
    problems = check_features(tiny_city(*grids))
    assert [(p.severity, p.code, p.feature) for p in problems] == [
        ("warning", "outside_parent", "G3")
    ]
    assert "outside its parent village V1" in problems[0].message


def test_errors_come_before_warnings_and_read_well():
    grids = [
        *two_grids(),
        feature("G3", "grid", "V1", square(122.02, LAT, 122.03, LAT + 0.01)),
        feature("G4", "grid", "V404", square(122.05, LAT, 122.051, LAT + 0.001)),
    ]
    problems = check_features(tiny_city(*grids))
    assert [(p.severity, p.feature) for p in problems] == [("error", "G4"), ("warning", "G3")]
    assert str(problems[0]).startswith("error: unknown_parent [G4]: grid G4 names parent")
