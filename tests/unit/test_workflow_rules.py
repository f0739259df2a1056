"""The workflow's transition table, parameter rules and trust formula; the clock's pure rules."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import app.i18n
from app.i18n import catalogue
from app.outbox.render import render_message
from app.reports.clock import DEFAULT_TARGETS, clock_status, is_night, pick_target
from app.reports.models import STAFF_STATUSES
from app.reports.templates import DEFAULT_TEMPLATES, fill
from app.reports.workflow import (
    ACTIONS,
    InvalidAction,
    InvalidTransition,
    allowed_actions,
    check_params,
    is_repeat,
    next_status,
)

# The table as the brief and the module docstring state it, written out independently.
EXPECTED = {
    ("acknowledge", "new"): "acknowledged",
    ("assign", "new"): "assigned",
    ("assign", "acknowledged"): "assigned",
    ("assign", "assigned"): "assigned",
    ("assign", "in_progress"): "assigned",
    ("start", "acknowledged"): "in_progress",
    ("start", "assigned"): "in_progress",
    ("resolve", "acknowledged"): "resolved",
    ("resolve", "assigned"): "resolved",
    ("resolve", "in_progress"): "resolved",
    ("reject", "new"): "rejected",
    ("reject", "acknowledged"): "rejected",
    ("reject", "assigned"): "rejected",
    ("reject", "in_progress"): "rejected",
    ("mark_duplicate", "new"): "duplicate",
    ("mark_duplicate", "acknowledged"): "duplicate",
    ("mark_duplicate", "assigned"): "duplicate",
    ("mark_duplicate", "in_progress"): "duplicate",
    ("reopen", "resolved"): "in_progress",
    ("reopen", "rejected"): "acknowledged",
    ("reopen", "duplicate"): "acknowledged",
    ("set_outcome", "resolved"): "resolved",
    ("set_outcome", "rejected"): "rejected",
}
ALL_PAIRS = [(a, s) for a in ACTIONS for s in STAFF_STATUSES]


@pytest.mark.parametrize(("action", "status"), ALL_PAIRS)
def test_transition_table(action, status):
    expected = EXPECTED.get((action, status))
    if expected is None:
        with pytest.raises(InvalidTransition) as info:
            next_status(action, status)
        assert info.value.status == 409
        assert info.value.code == "invalid_transition"
    else:
        assert next_status(action, status) == expected


def test_actions_are_the_contract_ones_plus_reopen_and_set_outcome():
    assert set(ACTIONS) == {
        "acknowledge",
        "assign",
        "start",
        "resolve",
        "reject",
        "mark_duplicate",
        "reopen",
        "set_outcome",
    }
    assert allowed_actions("new") == ["acknowledge", "assign", "reject", "mark_duplicate"]
    assert allowed_actions("resolved") == ["reopen", "set_outcome"]


@pytest.mark.parametrize(
    ("action", "kwargs", "field"),
    [
        ("resolve", {}, "outcome"),
        ("resolve", {"outcome": "great"}, "outcome"),
        ("set_outcome", {}, "outcome"),
        ("reject", {"outcome": "confirmed"}, "outcome"),
        ("acknowledge", {"outcome": "confirmed"}, "outcome"),
        ("assign", {}, "assignee"),
        ("acknowledge", {"assignee_id": 3}, "assignee"),
        ("mark_duplicate", {}, "duplicate_of"),
        ("resolve", {"outcome": "confirmed", "duplicate_of_id": 2}, "duplicate_of"),
        ("acknowledge", {"note": "x" * 10_001}, "note"),
        ("approve", {}, "action"),
    ],
)
def test_parameters_are_checked(action, kwargs, field):
    with pytest.raises(InvalidAction) as info:
        check_params(action, **kwargs)
    assert info.value.status == 422
    assert field in info.value.fields


def test_good_parameters_pass():
    check_params("resolve", outcome="unfounded", note="checked on site")
    check_params("reject")
    check_params("reject", outcome="malicious")
    check_params("assign", assignee_id=1)
    check_params("mark_duplicate", duplicate_of_id=1)


def _tip(**kw):
    base = {"status": "new", "assignee_id": None, "outcome": None, "duplicate_of_id": None}
    return SimpleNamespace(**{**base, **kw})


def test_repeats_are_recognised():
    assert is_repeat(_tip(status="acknowledged"), "acknowledge")
    assert not is_repeat(_tip(status="new"), "acknowledge")
    assert is_repeat(_tip(status="assigned", assignee_id=4), "assign", assignee_id=4)
    assert not is_repeat(_tip(status="assigned", assignee_id=4), "assign", assignee_id=5)
    assert is_repeat(_tip(status="resolved", outcome="confirmed"), "resolve", outcome="confirmed")
    assert not is_repeat(
        _tip(status="resolved", outcome="confirmed"), "resolve", outcome="unfounded"
    )
    assert is_repeat(_tip(status="rejected"), "reject")
    assert is_repeat(
        _tip(status="duplicate", duplicate_of_id=9), "mark_duplicate", duplicate_of_id=9
    )
    assert is_repeat(_tip(status="in_progress"), "reopen")


TARGETS = {
    ("high", None, None): (10, 600),
    ("high", "theft", None): (8, 600),
    ("high", None, "T1"): (7, 600),
    ("high", None, "G1"): (6, 600),
    ("high", "theft", "T1"): (4, 600),
}


@pytest.mark.parametrize(
    ("category", "path", "ack"),
    [
        ("theft", ["C", "T1", "V1", "G1"], 4),  # category+area beats a deeper area alone
        ("suspicious", ["C", "T1", "V1", "G1"], 6),  # the deepest area wins
        ("suspicious", ["C", "T1", "V1", "G2"], 7),
        ("theft", [], 8),  # category beats priority only
        ("suspicious", ["C", "T2", "V9", "G9"], 10),
    ],
)
def test_most_specific_target_wins(category, path, ack):
    assert pick_target(TARGETS, "high", category, path)[0] == ack


def test_targets_fall_back_to_the_defaults():
    assert pick_target({}, "urgent", "theft", ["C"]) == DEFAULT_TARGETS["urgent"]
    assert pick_target({}, "bogus", None, []) == DEFAULT_TARGETS["normal"]


@pytest.mark.parametrize(
    ("utc", "night"),
    [
        ("13:59", False),  # 21:59 in China
        ("14:00", True),  # 22:00
        ("21:59", True),  # 05:59 the next morning
        ("22:00", False),  # 06:00
        ("02:00", False),  # 10:00
    ],
)
def test_night_is_china_time(utc, night):
    hour, minute = map(int, utc.split(":"))
    assert is_night(dt.datetime(2026, 3, 1, hour, minute, tzinfo=dt.UTC)) is night


def test_clock_status_counts_down_and_reports_met():
    t0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
    tip = SimpleNamespace(
        ack_due_at=t0 + dt.timedelta(minutes=3),
        resolve_due_at=t0 + dt.timedelta(minutes=120),
        acknowledged_at=None,
        resolved_at=None,
        is_open=True,
        escalation_level=0,
    )
    status = clock_status(tip, t0 + dt.timedelta(minutes=1))
    assert status["ack_seconds_left"] == 120
    assert not status["ack_overdue"]
    late = clock_status(tip, t0 + dt.timedelta(minutes=4))
    assert late["ack_seconds_left"] == -60
    assert late["ack_overdue"]
    tip.acknowledged_at = t0 + dt.timedelta(minutes=2)
    done = clock_status(tip, t0 + dt.timedelta(minutes=10))
    assert done["ack_seconds_left"] is None
    assert done["ack_met"] is True
    assert done["resolve_seconds_left"] == 110 * 60


SAMPLE_PARAMS = {
    "reporter_status": {"ref": "T-7K3M9Q", "status": "in_handling"},
    "message_to_reporter": {"ref": "T-7K3M9Q", "text": "请补充照片"},
    "staff_new_tip": {"ref": "T-7K3M9Q", "category": "theft", "priority": "urgent", "grid": "G1"},
    "staff_escalation": {"ref": "T-7K3M9Q", "level": 1, "priority": "urgent", "minutes_overdue": 2},
    "staff_assigned": {"ref": "T-7K3M9Q", "priority": "high"},
    "staff_reporter_reply": {"ref": "T-7K3M9Q"},
}


@pytest.mark.parametrize("template", sorted(SAMPLE_PARAMS))
@pytest.mark.parametrize("locale", ["zh", "en"])
def test_every_outbox_template_renders(template, locale):
    text = render_message(template, SAMPLE_PARAMS[template], locale)
    assert "T-7K3M9Q" in text
    assert "{" not in text


def test_every_notification_of_this_file_has_sample_params():
    ours = json.loads((Path(app.i18n.__file__).parent / "notifications.json").read_text())
    keys = {k.removeprefix("notify.") for k in ours if k.startswith("notify.")}
    assert {k for k in keys if not k.startswith("category.")} == set(SAMPLE_PARAMS)


def test_codes_are_shown_by_name():
    assert render_message("reporter_status", SAMPLE_PARAMS["reporter_status"], "zh") == (
        "您的线索 T-7K3M9Q 状态更新：处理中。"
    )
    en = render_message("staff_new_tip", SAMPLE_PARAMS["staff_new_tip"], "en")
    assert "Urgent" in en
    assert "Theft" in en


def test_relayed_text_is_kept_verbatim():
    text = "*bold* <b>x</b> {ref} \u202eevil"
    out = render_message("message_to_reporter", {"ref": "T-1", "text": text}, "en")
    assert out.endswith(text)


def test_unknown_template_or_missing_param_fails_loudly():
    with pytest.raises(KeyError):
        render_message("no_such_template", {}, "zh")
    with pytest.raises(KeyError):
        render_message("staff_assigned", {"ref": "T-1"}, "zh")


def test_response_templates_exist_in_both_languages_and_fill_only_known_names():
    for code in DEFAULT_TEMPLATES:
        for part in ("title", "body"):
            assert f"template.{code}.{part}" in catalogue()
    assert fill("线索 {ref} {unknown}", {"ref": "T-1"}) == "线索 T-1 {unknown}"
