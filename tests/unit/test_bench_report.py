"""The benchmarks' shared table and JSON format: ratios, verdicts and the round trip."""

from __future__ import annotations

import json

import pytest

from bench import report
from bench.report import absolute, compare, format_table, load, save


def test_ratio_goal_and_cap_decide_the_verdict():
    row = compare("intake", 300.0, 400.0, "req/s", "bare", goal=(">=", 0.6))
    assert row.ratio == pytest.approx(0.75)
    assert row.verdict == "PASS"
    slow = compare("queue", 60.0, 30.0, "ms", "bare", goal=("<=", 3.0), cap=50.0)
    assert slow.ratio == pytest.approx(2.0)
    assert slow.verdict == "MISS"  # within the ratio, over the absolute cap
    assert slow.target == "≤ 3× and ≤ 50 ms"


def test_inverted_ratio_reads_as_times_faster():
    row = compare("grids", 5.0, 200.0, "µs", "PostGIS", goal=(">=", 10.0), invert=True)
    assert row.ratio == pytest.approx(40.0)
    assert row.ok is True


def test_rows_without_a_target_are_information():
    assert absolute("p50", 0.4, "s").verdict == "info"
    assert absolute("p95", 2.5, "s", ("<=", 2.0)).verdict == "MISS"


def test_table_lines_up_every_row():
    rows = [
        compare("a", 1.0, 2.0, "ms", "floor", goal=("<=", 1.3)),
        absolute("a much longer row name", 250.0, "MB", ("<=", 300.0), baseline=120.0, vs="idle"),
    ]
    lines = format_table("title", rows).splitlines()
    assert lines[0] == "title"
    column = lines[1].index("result")
    assert lines[3][column:].strip() == "PASS" and lines[4][column:].strip() == "PASS"
    assert "120 MB idle" in lines[4]


def test_save_writes_json_that_load_reads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "machine", lambda: {"cpus": 2})
    rows = [compare("x", 2.0, 1.0, "ms", "bare", goal=("<=", 3.0), runs={"x": [2.0, 2.1]})]
    save("unit", "a title", rows, settings={"runs": 2}, notes=["n"])
    doc = json.loads((tmp_path / "unit.json").read_text())
    assert doc["rows"][0]["verdict"] == "PASS"
    assert doc["rows"][0]["runs"] == {"x": [2.0, 2.1]}
    assert doc["machine"] == {"cpus": 2} and doc["commit"] and doc["finished_at"]
    title, loaded, _ = load("unit")
    assert title == "a title" and loaded == rows
