"""Priority rules, urgent-word matching, trust and the folding used for duplicate text."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from app.reports.abuse import client_key_for
from app.reports.duplicates import distance_m, photo_distance, text_hash
from app.reports.triage import (
    DEFAULT_URGENT_WORDS,
    assess_priority,
    describe_reason,
    is_night,
    match_urgent_words,
    priority_for,
    trust_from_counts,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = dt.datetime(2026, 11, 30, 14, 0, tzinfo=SHANGHAI)  # 06:00 UTC
NIGHT = dt.datetime(2026, 11, 30, 23, 30, tzinfo=SHANGHAI)

SEVERITY = {"robbery_violence": 4, "theft": 3, "suspicious": 2, "public_facility": 1}


def assess(category="theft", text="", *, at=DAY, trust=None, photos=False, acc=None, src="none"):
    return assess_priority(
        category_severity=SEVERITY[category],
        text=text,
        received_at=at,
        reporter_trust=trust,
        has_photos=photos,
        accuracy_m=acc,
        location_source=src,
        urgent_words=DEFAULT_URGENT_WORDS,
    )


def rules(a) -> dict[str, int]:
    return {r["rule"]: r["points"] for r in a.reasons if r["rule"] != "urgent_word"}


def words(a) -> list[str]:
    return [r["detail"] for r in a.reasons if r["rule"] == "urgent_word"]


# --- urgent words -----------------------------------------------------------------------------


def test_chinese_words_match_as_substrings_each_once():
    found = match_urgent_words("有人拿刀，刀上有血！救命救命", DEFAULT_URGENT_WORDS)
    assert sorted(w for w, _ in found) == ["刀", "救命", "血"]


def test_a_word_inside_a_longer_matched_word_is_not_counted_again():
    assert match_urgent_words("两人持刀抢劫", DEFAULT_URGENT_WORDS) == [("持刀", 4), ("抢劫", 3)]
    # a separate 刀 elsewhere still counts
    found = dict(match_urgent_words("持刀的人把刀扔了", DEFAULT_URGENT_WORDS))
    assert found == {"持刀": 4, "刀": 2}


def test_latin_words_are_whole_words_case_insensitive_with_plurals():
    found = dict(match_urgent_words("Man with a KNIFE, two Guns. HELP", DEFAULT_URGENT_WORDS))
    assert found == {"knife": 2, "gun": 3, "help": 2}
    assert (
        match_urgent_words("fireworks at the helpdesk; shotgun-free kidney", DEFAULT_URGENT_WORDS)
        == []
    )


def test_full_width_and_mixed_scripts_fold_before_matching():
    # full-width Latin (common in Chinese input methods) and Latin next to Chinese
    assert dict(match_urgent_words("ＫＮＩＦＥ在手", DEFAULT_URGENT_WORDS)) == {"knife": 2}
    assert dict(match_urgent_words("有人喊help快来", DEFAULT_URGENT_WORDS)) == {"help": 2}


def test_the_word_list_is_an_input():
    custom = [("可疑包裹", 3), ("drone", 2)]
    assert match_urgent_words("车站有可疑包裹 and a Drone", custom) == [
        ("可疑包裹", 3),
        ("drone", 2),
    ]
    assert match_urgent_words("有人持刀", custom) == []


# --- the score and its reasons ----------------------------------------------------------------


def test_severity_is_the_base_and_sets_the_band():
    assert assess("robbery_violence").priority == "high"  # 7
    assert assess("theft").priority == "normal"  # 5: a theft reported later, by address
    assert assess("suspicious").priority == "normal"  # 3
    assert assess("public_facility").priority == "low"  # 0
    assert rules(assess("theft")) == {"severity": 5}


def test_a_theft_reported_on_the_scene_is_high():
    a = assess("theft", "电动车被偷 e-bike stolen", acc=15, src="device")
    assert (a.priority, a.score) == ("high", 6)
    assert rules(a) == {"severity": 5, "on_scene_fix": 1}


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("有人持刀伤人", "持刀"),
        ("两伙人打架", "打架"),
        ("a man with a knife", "knife"),
        ("Help!", "help"),
    ],
)
def test_urgent_from_words_alone_on_a_severe_category(text, word):
    a = assess("robbery_violence", text)
    assert a.priority == "urgent" and a.rank == 0
    assert word in words(a)


def test_each_reason_is_kept_with_its_points():
    a = assess(
        "robbery_violence",
        "持刀抢劫，有人受伤",
        at=NIGHT,
        trust=0.9,
        photos=True,
        acc=8,
        src="device",
    )
    assert a.reasons[0] == {"rule": "severity", "points": 7, "detail": "4"}
    assert {"rule": "urgent_word", "points": 4, "detail": "持刀"} in a.reasons
    assert rules(a) == {
        "severity": 7,
        "night": 1,
        "photo": 1,
        "on_scene_fix": 1,
        "trusted_reporter": 1,
    }
    # words together are capped at 6 points
    assert sum(r["points"] for r in a.reasons if r["rule"] == "urgent_word") == 6
    assert a.score == sum(r["points"] for r in a.reasons) == 17


def test_low_severity_is_never_urgent_without_words():
    a = assess("public_facility", at=NIGHT, trust=0.95, photos=True, acc=5, src="device")
    assert a.priority == "normal" and a.score == 4  # every context point, still normal


def test_context_alone_never_makes_an_ordinary_tip_urgent():
    a = assess("theft", "bike stolen", at=NIGHT, trust=0.95, photos=True, acc=5, src="device")
    assert a.score == 9 and a.priority == "high"
    assert {"rule": "urgent_gate", "points": 0} in a.reasons
    # ... but a severe category at night on the scene is
    assert assess("robbery_violence", at=NIGHT, acc=20, src="device").priority == "urgent"


def test_words_lift_a_wrongly_chosen_low_category():
    a = assess(
        "public_facility", "燃气管道爆炸 着火了", at=NIGHT, photos=True, acc=20, src="device"
    )
    assert words(a) == ["爆炸", "着火"] and a.priority == "urgent"
    assert assess("public_facility", "路灯坏了 streetlight broken").priority == "low"


@pytest.mark.parametrize(
    ("local", "night"),
    [((21, 59), False), ((22, 0), True), ((2, 30), True), ((5, 59), True), ((6, 0), False)],
)
def test_night_is_22_to_06_shanghai_time(local, night):
    at = dt.datetime(2026, 11, 30, *local, tzinfo=SHANGHAI).astimezone(dt.UTC)
    assert is_night(at) is night
    assert ("night" in rules(assess("suspicious", at=at))) is night


def test_night_raises_a_borderline_tip():
    assert (
        assess("suspicious", "有人撬车门", acc=30, src="device", photos=True).priority == "normal"
    )
    assert (
        assess("suspicious", "有人撬车门", acc=30, src="device", photos=True, at=NIGHT).priority
        == "high"
    )


def test_trust_raises_and_a_malicious_record_lowers():
    base = assess("theft", acc=10, src="device")
    assert assess("theft", acc=10, src="device", trust=0.8).score == base.score + 1
    low = assess("theft", acc=10, src="device", trust=trust_from_counts(1, 0, 1))
    assert rules(low)["untrusted_reporter"] == -2 and low.priority == "normal"
    assert "trusted_reporter" not in rules(assess("theft", trust=0.6))
    assert rules(assess("theft", trust=None)) == {"severity": 5}


def test_location_quality():
    assert "on_scene_fix" in rules(assess(acc=50, src="device"))
    assert "on_scene_fix" in rules(assess(acc=None, src="exif"))
    assert "on_scene_fix" not in rules(assess(acc=500, src="device"))
    assert "on_scene_fix" not in rules(assess(acc=10, src="map"))
    assert "on_scene_fix" not in rules(assess(src="address"))


def test_photo_adds_a_point():
    assert assess(photos=True).score == assess().score + 1


@pytest.mark.parametrize(
    ("score", "severe", "words_", "expected"),
    [
        (9, True, False, "urgent"),
        (9, False, True, "urgent"),
        (9, False, False, "high"),
        (8, True, True, "high"),
        (6, False, False, "high"),
        (5, False, False, "normal"),
        (3, False, False, "normal"),
        (2, False, False, "low"),
        (-1, False, False, "low"),
    ],
)
def test_thresholds(score, severe, words_, expected):
    assert priority_for(score, severe=severe, has_words=words_) == expected


def test_reasons_render_in_chinese_and_english():
    word = {"rule": "urgent_word", "points": 2, "detail": "刀"}
    assert describe_reason(word) == "紧急词「刀」 +2"
    assert describe_reason(word, "en") == "Urgent word “刀” +2"
    assert describe_reason(
        {"rule": "untrusted_reporter", "points": -2, "detail": "0.20"}, "en"
    ) == ("Low reporter trust (0.20) -2")


# --- trust --------------------------------------------------------------------------------------


def test_trust_has_a_small_sample_prior():
    assert trust_from_counts(0, 0, 0) is None  # nothing closed yet: unknown, not zero
    assert trust_from_counts(1, 1, 0) == pytest.approx(2 / 3)  # one lucky tip is not trusted
    assert trust_from_counts(3, 3, 0) == pytest.approx(0.8)
    assert trust_from_counts(2, 0, 0) == pytest.approx(0.25)
    assert trust_from_counts(1, 0, 1) == pytest.approx(0.2)  # one malicious tip
    assert trust_from_counts(6, 5, 1) == pytest.approx(0.6)


# --- duplicate helpers --------------------------------------------------------------------------


def test_text_hash_folds_width_case_spaces_and_punctuation():
    a = text_hash("有人持刀！！ 在 二中门口  Help")
    assert a == text_hash("有人持刀 在二中门口 help")
    assert a == text_hash("有人持刀，在\u200b二中门口…… HELP 🔪")
    assert a == text_hash("有人持刀!在二中门口 ＨＥＬＰ")
    assert a != text_hash("有人持刀 在三中门口 help")
    assert text_hash("  ！！ ") is None and text_hash("") is None


def test_distance_and_photo_distance():
    assert distance_m(40.64, 122.50, 40.64, 122.50) == 0
    assert distance_m(40.64, 122.50, 40.641, 122.50) == pytest.approx(111.2, abs=0.2)
    assert photo_distance("ffffffffffffffff", "fffffffffffffff0") == 4
    assert photo_distance("8000000000000000", "0000000000000001") == 2


def test_client_key_hides_the_address_and_skips_loopback():
    key = client_key_for("secret", "203.0.113.7")
    assert key and "203.0.113.7" not in key and len(key) == 64
    assert key != client_key_for("secret", "203.0.113.8")
    assert client_key_for("secret", "127.0.0.1") is None
    assert client_key_for("secret", "::1") is None
    assert client_key_for("secret", None) is None
