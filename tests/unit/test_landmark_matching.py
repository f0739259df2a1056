"""Matching typed Chinese addresses to landmarks: normalisation, longest match, ties."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.staff.landmarks import (
    PLACE_MIN_CONFIDENCE,
    build_index,
    find_in_index,
    landmark_keys,
    normalise_place,
    strip_locative,
)


def row(id_, name, aliases=(), lat=40.64, lon=122.50, grid="G1"):
    return SimpleNamespace(
        id=id_, name=name, aliases=list(aliases), latitude=lat, longitude=lon, grid_code=grid
    )


@pytest.fixture
def index():
    return build_index(
        [
            row(1, "二中门口", ["第二中学", "市二中"], lat=40.641, lon=122.501),
            row(2, "汽车站", ["长途汽车站", "客运站"], lat=40.642, lon=122.502, grid="G2"),
            row(3, "钢都小区", lat=40.643, lon=122.503, grid="G3"),
            row(4, "钢都小区3号楼", lat=40.6431, lon=122.5031, grid="G3"),
            row(5, "Wanda Plaza", ["万达广场"], lat=40.644, lon=122.504, grid="G4"),
        ]
    )


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("钢都小区 3号楼", "钢都小区3号楼"),
        ("钢都小区３号楼", "钢都小区3号楼"),  # full-width digit
        ("钢都小区三号楼", "钢都小区3号楼"),
        ("钢都小区3#楼", "钢都小区3号楼"),
        ("钢都小区十二栋", "钢都小区12栋"),
        ("钢都小区二十三号楼", "钢都小区23号楼"),
        ("一百零五号", "105号"),
        ("“二中”门口！", "二中门口"),
        ("二中", "二中"),  # a numeral inside a name stays as typed
        ("ＷＡＮＤＡ　Plaza", "wandaplaza"),
        ("", ""),
    ],
)
def test_normalise_place(raw, folded):
    assert normalise_place(raw) == folded


def test_strip_locative_keeps_short_names():
    assert strip_locative("二中门口") == "二中"
    assert strip_locative("汽车站对面") == "汽车站"
    assert strip_locative("门口") == "门口"  # nothing would be left
    assert strip_locative("汽车站") == "汽车站"


def test_keys_include_the_bare_form():
    keys = landmark_keys("二中门口", ["第二中学"])
    assert keys == {"二中门口": 0, "二中": 2, "第二中学": 1}


@pytest.mark.parametrize(
    ("text", "landmark_id", "matched"),
    [
        ("钢都小区3号楼门口有人打架", 4, "钢都小区3号楼"),  # the longest name wins
        ("钢都小区三号楼下面有人打架", 4, "钢都小区3号楼"),
        ("钢都小区东门", 3, "钢都小区"),
        ("二中门口", 1, "二中门口"),
        ("二中附近有可疑人员", 1, "二中"),  # the cut form of "二中门口"
        ("二中旁边", 1, "二中"),
        ("第二中学对面", 1, "第二中学"),  # by alias, not by magic
        ("长途汽车站售票厅", 2, "长途汽车站"),
        ("客运站", 2, "客运站"),
        ("在万达广场停车场", 5, "万达广场"),
        ("wanda plaza", 5, "wandaplaza"),
    ],
)
def test_finds_the_landmark(index, text, landmark_id, matched):
    match = find_in_index(index, text)
    assert match is not None
    assert (match.landmark_id, match.matched) == (landmark_id, matched)


def test_no_match(index):
    assert find_in_index(index, "人民路与解放路交叉口") is None
    assert find_in_index(index, "") is None
    assert find_in_index(index, "中") is None


def test_confidence_is_high_when_the_text_is_the_place(index):
    assert find_in_index(index, "汽车站").confidence == 1.0
    assert find_in_index(index, "汽车站对面").confidence == 1.0
    assert find_in_index(index, "二中附近").confidence == pytest.approx(0.85)
    long_text = find_in_index(index, "汽车站出口往东走大约五百米的路边有辆可疑面包车")
    assert long_text.landmark_id == 2
    assert long_text.confidence < 1.0


def test_ambiguous_names_share_the_confidence():
    index = build_index(
        [
            row(7, "汽车站", lat=40.64, lon=122.50, grid="G1"),
            row(3, "汽车站", lat=40.66, lon=122.52, grid="G4"),
        ]
    )
    match = find_in_index(index, "汽车站")
    assert match.landmark_id == 3  # lowest id: the same answer every time
    assert match.candidates == 2
    assert match.confidence < PLACE_MIN_CONFIDENCE


def test_same_place_twice_is_not_ambiguous():
    index = build_index([row(1, "汽车站"), row(2, "客运站", ["汽车站"])])
    match = find_in_index(index, "汽车站")
    assert (match.landmark_id, match.candidates, match.confidence) == (1, 1, 1.0)


def test_name_beats_alias_of_the_same_length():
    index = build_index(
        [row(1, "东站", ["北站"], lat=40.60, lon=122.4), row(2, "北站", lat=40.70, lon=122.6)]
    )
    match = find_in_index(index, "北站")
    assert match.landmark_id == 2  # its name, not the other's alias
    assert match.candidates == 2


def test_earliest_mention_wins_between_equal_keys(index):
    # Two aliases of three characters: the one mentioned first is where it happened.
    assert find_in_index(index, "客运站到市二中之间").landmark_id == 2
    assert find_in_index(index, "市二中到客运站之间").landmark_id == 1
