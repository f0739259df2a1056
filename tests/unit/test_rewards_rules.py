"""The pure rules of points: which rules apply, the cap, periods, ranking, digest timing."""

from __future__ import annotations

import datetime as dt

import pytest

from app.rewards.export import _cell
from app.rewards.rules import (
    RULE_DEFAULTS,
    InvalidPeriod,
    TipState,
    credit_under_cap,
    current_period,
    month_of,
    needs_second_approval,
    next_digest_at,
    nominees,
    parse_period,
    rank,
    rules_that_apply,
)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (TipState("resolved", "confirmed", "normal"), {"tip_confirmed", "led_to_resolution"}),
        (
            TipState("resolved", "confirmed", "urgent"),
            {"tip_confirmed", "urgent_confirmed", "led_to_resolution"},
        ),
        (
            TipState("resolved", "confirmed", "high", in_incident=True, first_of_incident=True),
            {"tip_confirmed", "first_reporter", "led_to_resolution"},
        ),
        (
            TipState("resolved", "confirmed", "high", in_incident=True),
            {"tip_confirmed", "later_duplicate", "led_to_resolution"},
        ),
        (TipState("in_progress", "confirmed", "normal"), {"tip_confirmed"}),
        (TipState("rejected", "unfounded", "urgent"), {"unfounded"}),
        (TipState("resolved", "unfounded", "normal"), {"unfounded"}),
        (TipState("rejected", "malicious", "normal"), {"malicious"}),
        (TipState("duplicate", "malicious", "normal"), {"malicious"}),
        (TipState("duplicate", None, "urgent"), {"later_duplicate"}),
        (TipState("duplicate", "confirmed", "urgent"), {"later_duplicate"}),
        (TipState("rejected", None, "normal"), set()),
        (TipState("in_progress", None, "normal"), set()),
    ],
)
def test_rules_that_apply(state, expected):
    assert rules_that_apply(state) == expected


def test_defaults_match_the_issue():
    assert RULE_DEFAULTS == {
        "tip_confirmed": 10,
        "urgent_confirmed": 10,
        "first_reporter": 5,
        "later_duplicate": 0,
        "led_to_resolution": 5,
        "unfounded": 0,
        "malicious": -20,
    }
    assert min(v for k, v in RULE_DEFAULTS.items() if k != "malicious") >= 0


@pytest.mark.parametrize(
    ("points", "earned", "cap", "credited"),
    [
        (10, 0, 300, 10),
        (10, 295, 300, 5),
        (10, 300, 300, 0),
        (10, 320, 300, 0),  # the cap was lowered after the points were earned
        (10, 10_000, 0, 10),  # 0 = no cap
        (-20, 300, 300, -20),  # penalties are never capped
        (0, 0, 300, 0),
    ],
)
def test_credit_under_cap(points, earned, cap, credited):
    assert credit_under_cap(points, earned, cap) == credited


def test_second_approval_threshold_counts_either_sign():
    assert needs_second_approval(-20, 15) and needs_second_approval(16, 15)
    assert not needs_second_approval(15, 15) and not needs_second_approval(-15, 15)


@pytest.mark.parametrize(
    ("value", "label", "kind", "first", "last"),
    [
        ("2026", "2026", "year", "2026-01", "2026-12"),
        ("2026-Q4", "2026-Q4", "quarter", "2026-10", "2026-12"),
        (" 2026-q1 ", "2026-Q1", "quarter", "2026-01", "2026-03"),
        ("2026-11", "2026-11", "month", "2026-11", "2026-11"),
    ],
)
def test_parse_period(value, label, kind, first, last):
    period = parse_period(value)
    assert (period.label, period.kind, period.months[0], period.months[-1]) == (
        label,
        kind,
        first,
        last,
    )


def test_period_bounds():
    q4 = parse_period("2026-Q4")
    assert q4.start() == dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    assert q4.end() == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert parse_period("2026-02").end() == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "value",
    ["", "26", "2026-13", "2026-00", "2026-Q5", "2026-Q0", "1999", "2026/11", "2026-1", None],
)
def test_bad_periods_are_refused(value):
    with pytest.raises(InvalidPeriod) as info:
        parse_period(value)
    assert info.value.status == 422 and "period" in info.value.fields


def test_current_period_and_month_of():
    at = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    assert month_of(at) == "2027-01"  # the ledger counts in UTC
    now = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
    assert (current_period(now), current_period(now, "quarter"), current_period(now, "year")) == (
        "2026-11",
        "2026-Q4",
        "2026",
    )


def test_rank_shares_places_on_ties_and_nominates_ties_at_the_boundary():
    rows = [
        {"name": "d", "points": 5, "confirmed_tips": 1},
        {"name": "a", "points": 30, "confirmed_tips": 2},
        {"name": "c", "points": 15, "confirmed_tips": 1},
        {"name": "b", "points": 15, "confirmed_tips": 1},
        {"name": "e", "points": 15, "confirmed_tips": 2},
        {"name": "z", "points": 0, "confirmed_tips": 0},
    ]
    ranked = rank(rows, key=lambda r: (-r["points"], -r["confirmed_tips"], r["name"]))
    assert [(r["name"], r["rank"]) for r in ranked] == [
        ("a", 1),
        ("e", 2),
        ("b", 3),
        ("c", 3),
        ("d", 5),
        ("z", 6),
    ]
    assert [r["name"] for r in nominees(ranked, 3)] == ["a", "e", "b", "c"]
    assert [r["name"] for r in nominees(ranked, 10)] == ["a", "e", "b", "c", "d"]  # never 0 points


def test_next_digest_is_at_the_fixed_hour_strictly_after_now():
    assert next_digest_at(dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC), 12) == dt.datetime(
        2026, 11, 20, 12, tzinfo=dt.UTC
    )
    assert next_digest_at(dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC), 12) == dt.datetime(
        2026, 11, 21, 12, tzinfo=dt.UTC
    )
    beijing = dt.timezone(dt.timedelta(hours=8))
    assert next_digest_at(dt.datetime(2026, 11, 21, 1, 0, tzinfo=beijing), 12) == dt.datetime(
        2026, 11, 20, 12, tzinfo=dt.UTC
    ) + dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("甲化工厂", "甲化工厂"),
        (-20, -20),  # numbers stay numbers, negative ones too
        (45, 45),
        (None, ""),
    ],
)
def test_export_cells_are_inert(value, cell):
    assert _cell(value) == cell
