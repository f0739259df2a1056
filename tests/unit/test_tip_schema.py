"""The tip schema: what is accepted, what is refused (property tests included)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from app.reports.errors import InvalidTip
from app.reports.services import validate_fields


def test_form_strings_and_json_values_load_the_same():
    as_json = validate_fields(
        {"category": "theft", "latitude": 40.6, "longitude": 122.5, "anonymous": True}
    )
    as_form = validate_fields(
        {
            "category": "theft",
            "latitude": "40.6",
            "longitude": "122.5",
            "anonymous": "on",
            "address": "",
        }
    )
    assert as_json == as_form


@given(
    lat=st.floats(allow_nan=True, allow_infinity=True),
    lon=st.floats(allow_nan=True, allow_infinity=True),
)
def test_only_real_coordinates_pass(lat, lon):
    ok = not math.isnan(lat) and not math.isnan(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
    try:
        data = validate_fields({"category": "other", "latitude": lat, "longitude": lon})
    except InvalidTip as exc:
        assert not ok
        assert set(exc.fields) <= {"latitude", "longitude"}
    else:
        assert ok and data["latitude"] == lat


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=20)
        | st.lists(st.integers(), max_size=3),
    )
)
def test_arbitrary_objects_never_crash_the_schema(raw):
    try:
        validate_fields(raw)
    except InvalidTip as exc:
        assert exc.fields
