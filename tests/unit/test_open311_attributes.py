"""Service-definition questions, answer validation, XML rendering and the GET filters."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from app.i18n import catalogue
from app.open311.attributes import (
    DATATYPES,
    QUESTIONS,
    InvalidAttributes,
    describe,
    validate_answers,
)
from app.open311.filters import BadQuery, parse_filter
from app.open311.render import error_body, to_xml
from app.partners.identities import person_keys
from app.reports.models import CATEGORY_CODES

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def parse(data: bytes) -> ET.Element:
    """Parse our own XML with the standard parser, as the issue asks."""
    return ET.fromstring(data)  # noqa: S314 (our own output, not untrusted input)


def test_every_category_has_questions_with_texts_in_both_languages():
    assert set(QUESTIONS) == set(CATEGORY_CODES)
    texts = catalogue()
    for code, questions in QUESTIONS.items():
        for q in questions:
            assert q.datatype in DATATYPES
            assert {"zh", "en"} <= set(texts[f"open311.attr.{q.code}"])
            for value in q.values:
                assert {"zh", "en"} <= set(texts[f"open311.value.{value}"])
        assert {"zh", "en"} <= set(texts[f"open311.service.{code}"])
    assert describe("theft", "en")[0]["description"] == "What was stolen?"


def test_valid_answers_are_typed():
    assert validate_answers("theft", {"stolen_item": ["ebike"], "loss_estimate": ["12.5"]}) == {
        "stolen_item": "ebike",
        "loss_estimate": 12.5,
    }
    kept = validate_answers("fire_hazard", {"fire_signs": ["smoke", "wiring", "smoke"]})
    assert kept == {"fire_signs": ["smoke", "wiring"]}
    kept = validate_answers("missing_person", {"last_seen_at": ["2026-03-01T08:00:00+08:00"]})
    assert kept == {"last_seen_at": "2026-03-01T08:00:00+08:00"}
    assert validate_answers("other", {}) == {}


@pytest.mark.parametrize(
    ("service", "answers", "field"),
    [
        ("theft", {}, "attribute[stolen_item]"),
        ("theft", {"stolen_item": ["bicycle", "phone"]}, "attribute[stolen_item]"),
        (
            "theft",
            {"stolen_item": ["bicycle"], "loss_estimate": ["inf"]},
            "attribute[loss_estimate]",
        ),
        ("fire_hazard", {"fire_signs": ["smoke", "ghosts"]}, "attribute[fire_signs]"),
        ("missing_person", {"last_seen_at": ["2026-03-01T08:00:00"]}, "attribute[last_seen_at]"),
        (
            "public_facility",
            {"facility_kind": ["cctv"], "facility_detail": ["x" * 4001]},
            "attribute[facility_detail]",
        ),
        ("other", {"suspect_name": ["x"]}, "attribute[suspect_name]"),
    ],
)
def test_invalid_answers_name_the_attribute(service, answers, field):
    with pytest.raises(InvalidAttributes) as info:
        validate_answers(service, answers)
    assert field in info.value.fields
    assert "inf" not in str(info.value.fields)  # parser messages do not echo the input


def test_xml_nests_lists_as_the_spec_names_them_and_drops_illegal_characters():
    body = {"service_code": "theft", "attributes": [{"code": "a", "values": [{"key": "k"}]}]}
    root = parse(to_xml("service_definition", body))
    assert root.find("attributes/attribute/values/value/key").text == "k"
    root = parse(to_xml("service_requests", [{"description": "a\x00b\x1bc 😀", "lat": None}]))
    assert root.findtext("request/description") == "abc 😀"
    assert root.find("request/lat").text is None
    errors = parse(to_xml("errors", error_body(400, "bad", {"lat": ["Not valid."]})))
    assert errors.findtext("error/description") == "lat: Not valid."


def test_filters_default_to_the_last_90_days_and_refuse_more():
    query = parse_filter({}, "zh", NOW)
    assert query.end == NOW and query.end - query.start == dt.timedelta(days=90)
    assert query.page_size == 1000
    query = parse_filter({"start_date": "2026-01-01T00:00:00+08:00"}, "zh", NOW)
    assert query.start == dt.datetime(2025, 12, 31, 16, tzinfo=dt.UTC)
    assert query.end - query.start == dt.timedelta(days=90)
    with pytest.raises(BadQuery):
        parse_filter(
            {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-04-02T00:00:00Z"}, "zh", NOW
        )
    query = parse_filter(
        {"service_request_id": "t-7k3m9q, T-7K3M9Q ,junk", "status": "nope"}, "zh", NOW
    )
    assert query.refs == ("T-7K3M9Q",)  # ids override every other filter


def test_person_keys_normalise_and_rank():
    keys = person_keys(
        {"email": " A@B.CN ", "phone": "+86 138-0000-0000", "first_name": "Li", "last_name": "LEI"}
    )
    assert keys == [("email", "a@b.cn"), ("phone", "8613800000000"), ("name", "li lei")]
    assert person_keys({"device_id": "  ", "first_name": ""}) == []
