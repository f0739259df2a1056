"""WGS-84 / GCJ-02 / BD-09 conversions: published vectors, exact inverse, round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.grids.datum import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    out_of_china,
    to_layer_datum,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

# The example in the coordtransform README (github.com/wandergis/coordtransform), all four
# functions applied to (116.404, 39.915).
README_INPUT = (116.404, 39.915)
README_BD09_TO_GCJ02 = (116.39762729119315, 39.90865673957631)
README_GCJ02_TO_BD09 = (116.41036949371029, 39.92133699351021)
README_WGS84_TO_GCJ02 = (116.41024449916938, 39.91640428150164)
README_GCJ02_TO_WGS84_ONE_STEP = (116.39775550083061, 39.91359571849836)

REFERENCE_CITY = (122.5052, 40.6406)  # lon, lat


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Return the haversine distance between two (lon, lat) points."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def test_forward_formulas_match_the_published_vectors():
    assert wgs84_to_gcj02(*README_INPUT) == pytest.approx(README_WGS84_TO_GCJ02, abs=1e-12)
    assert gcj02_to_bd09(*README_INPUT) == pytest.approx(README_GCJ02_TO_BD09, abs=1e-12)
    assert bd09_to_gcj02(*README_INPUT) == pytest.approx(README_BD09_TO_GCJ02, abs=1e-12)


def test_gcj02_inverse_is_exact_where_the_published_one_step_inverse_is_not():
    exact = gcj02_to_wgs84(*README_INPUT)
    assert wgs84_to_gcj02(*exact) == pytest.approx(README_INPUT, abs=1e-9)
    # The published value is the usual one-step approximation: close, but not exact.
    assert metres(exact, README_GCJ02_TO_WGS84_ONE_STEP) < 1.0
    assert metres(wgs84_to_gcj02(*README_GCJ02_TO_WGS84_ONE_STEP), README_INPUT) > 0.05
    assert metres(wgs84_to_gcj02(*exact), README_INPUT) < 1e-4


def test_the_shift_near_the_reference_city_is_about_470_m():
    shift = metres(REFERENCE_CITY, wgs84_to_gcj02(*REFERENCE_CITY))
    assert 440 < shift < 500
    # Baidu adds its own shift on top of GCJ-02.
    assert metres(REFERENCE_CITY, wgs84_to_bd09(*REFERENCE_CITY)) > shift


@pytest.mark.parametrize(
    "point", [(2.3522, 48.8566), (-74.006, 40.7128), (151.2, -33.87), (0.0, 0.0)]
)
def test_gcj02_leaves_points_outside_china_alone(point):
    assert out_of_china(*point)
    assert wgs84_to_gcj02(*point) == point
    assert gcj02_to_wgs84(*point) == point


china_lon = st.floats(min_value=74.0, max_value=134.5)
china_lat = st.floats(min_value=4.5, max_value=53.0)


@given(china_lon, china_lat)
def test_wgs84_gcj02_round_trip(lon, lat):
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert back == pytest.approx((lon, lat), abs=1e-7)


@given(china_lon, china_lat)
def test_gcj02_wgs84_round_trip(lon, lat):
    again = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    assert again == pytest.approx((lon, lat), abs=1e-7)


@given(china_lon, china_lat)
def test_shift_is_hundreds_of_metres_not_kilometres(lon, lat):
    assert 1 < metres((lon, lat), wgs84_to_gcj02(lon, lat)) < 1_500


@given(china_lon, china_lat)
def test_bd09_round_trip_within_the_closed_forms_accuracy(lon, lat):
    # bd09_to_gcj02 is the published closed form, itself good to about 1e-6 degrees (~10 cm).
    assert bd09_to_gcj02(*gcj02_to_bd09(lon, lat)) == pytest.approx((lon, lat), abs=2e-6)
    assert bd09_to_wgs84(*wgs84_to_bd09(lon, lat)) == pytest.approx((lon, lat), abs=2e-6)


def test_to_layer_datum_converts_incoming_wgs84_points():
    assert to_layer_datum(*REFERENCE_CITY, "wgs84") == REFERENCE_CITY
    assert to_layer_datum(*REFERENCE_CITY, "gcj02") == wgs84_to_gcj02(*REFERENCE_CITY)
    assert to_layer_datum(*REFERENCE_CITY, "bd09") == wgs84_to_bd09(*REFERENCE_CITY)
    with pytest.raises(ValueError, match="unknown datum"):
        to_layer_datum(*REFERENCE_CITY, "epsg3857")
