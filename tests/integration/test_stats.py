"""Dashboard counts, response times and the CSV export: scoped, local days, safe cells."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from app.people.services import create_reporter
from app.reports.clock import LOCAL_TZ
from app.staff.queue import QueueFilters
from app.staff.stats import (
    EXPORT_COLUMNS,
    StatsInvalid,
    export_csv,
    local_day_bounds,
    response_times,
    safe_cell,
    tips_over_time,
)
from tests.extras import add_staff, add_tip
from tests.layers import centre_of

# 2026-11-20 23:30 in the city is 15:30 UTC; 00:30 the next local day is 16:30 UTC.
DAY = dt.date(2026, 11, 20)
LATE_EVENING = dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC)
AFTER_MIDNIGHT = dt.datetime(2026, 11, 20, 16, 30, tzinfo=dt.UTC)


@pytest.fixture
def world(seeded, settings):
    """Tips in G1 (two days), G2 and one without a grid; staff of several reaches."""
    with seeded() as s:
        _, admin = add_staff(s, "admin", "admin")
        _, g1 = add_staff(s, "g1", "grid_worker", ("G1",))
        _, town = add_staff(s, "town", "supervisor", ("T1",))
        reporter = create_reporter(s, "taxi_driver")
        tips = {
            "a": add_tip(s, settings, at=centre_of("G1"), now=LATE_EVENING),
            "b": add_tip(
                s,
                settings,
                at=centre_of("G1"),
                category="fire_hazard",
                now=AFTER_MIDNIGHT,
                reporter_id=reporter.id,
                description='=HYPERLINK("http://x")',
            ),
            "c": add_tip(s, settings, at=centre_of("G2"), category="fire_hazard", now=LATE_EVENING),
            "d": add_tip(s, settings, address="不知道在哪", now=AFTER_MIDNIGHT),
        }
        # a: acknowledged in 5 minutes against a 10-minute target; b: 20 against 3 (late);
        # c: never, and past its target; d: never, target far away (still waiting).
        a, b, c, d = tips.values()
        for tip, priority, rank in (
            (a, "normal", 2),
            (b, "urgent", 0),
            (c, "urgent", 0),
            (d, "normal", 2),
        ):
            tip.priority, tip.priority_rank = priority, rank  # whatever triage made of them
        a.ack_due_at = a.received_at + dt.timedelta(minutes=10)
        a.acknowledged_at = a.received_at + dt.timedelta(minutes=5)
        b.ack_due_at = b.received_at + dt.timedelta(minutes=3)
        b.acknowledged_at = b.received_at + dt.timedelta(minutes=20)
        c.ack_due_at = c.received_at + dt.timedelta(minutes=3)
        d.ack_due_at = d.received_at + dt.timedelta(days=30)
        s.commit()
        refs = {k: v.ref for k, v in tips.items()}
    return seeded, {"admin": admin, "g1": g1, "town": town}, refs, reporter.pseudonym


def test_local_day_bounds():
    start, end = local_day_bounds(DAY, DAY)
    assert start == dt.datetime(2026, 11, 19, 16, tzinfo=dt.UTC)
    assert end == dt.datetime(2026, 11, 20, 16, tzinfo=dt.UTC)
    with pytest.raises(StatsInvalid):
        local_day_bounds(DAY, DAY - dt.timedelta(days=1))
    with pytest.raises(StatsInvalid):
        local_day_bounds(DAY, DAY + dt.timedelta(days=400))


def test_counts_per_local_day_and_group(world):
    factory, viewers, _, _ = world
    next_day = DAY + dt.timedelta(days=1)
    with factory() as s:
        by_cat = tips_over_time(s, viewers["admin"], first=DAY, last=next_day, by="category")
        assert by_cat.days == [DAY, next_day]
        assert by_cat.totals == [2, 2]  # the bucket is the city's day, not UTC's
        assert {x.key: x.counts for x in by_cat.series} == {
            "theft": [1, 1],
            "fire_hazard": [1, 1],
        }
        en = tips_over_time(
            s, viewers["admin"], first=DAY, last=next_day, by="category", locale="en"
        )
        assert {x.label for x in en.series} == {"Theft", "Fire hazard"}

        by_grid = tips_over_time(s, viewers["admin"], first=DAY, last=next_day, by="grid")
        assert {x.key: x.counts for x in by_grid.series} == {
            "G1": [1, 1],
            "G2": [1, 0],
            "-": [0, 1],
        }
        assert by_grid.series[0].key == "G1"  # biggest first
        by_town = tips_over_time(s, viewers["admin"], first=DAY, last=next_day, by="town")
        assert [(x.key, x.label, x.total) for x in by_town.series] == [
            ("T1", "测试区", 3),
            ("-", "无网格（待定位）", 1),
        ]
        with pytest.raises(StatsInvalid):
            tips_over_time(s, viewers["admin"], first=DAY, last=DAY, by="reporter")


def test_counts_are_scoped(world):
    factory, viewers, _, _ = world
    next_day = DAY + dt.timedelta(days=1)
    with factory() as s:
        mine = tips_over_time(s, viewers["g1"], first=DAY, last=next_day, by="grid")
        assert [(x.key, x.total) for x in mine.series] == [("G1", 2)]
        town = tips_over_time(s, viewers["town"], first=DAY, last=next_day, by="grid")
        assert sum(town.totals) == 4  # a town supervisor also sees the unplaced tip
        only_fire = tips_over_time(
            s,
            viewers["g1"],
            first=DAY,
            last=next_day,
            by="category",
            filters=QueueFilters(category="fire_hazard"),
        )
        assert only_fire.totals == [0, 1]


def test_response_times(world):
    factory, viewers, _, _ = world
    now = AFTER_MIDNIGHT + dt.timedelta(hours=1)
    with factory() as s:
        rows = {
            r.priority: r
            for r in response_times(
                s, viewers["admin"], first=DAY, last=DAY + dt.timedelta(days=1), now=now
            )
        }
        everything = rows["all"]
        assert (everything.received, everything.acknowledged) == (4, 2)
        assert everything.median_ack_minutes == 12.5
        assert (everything.on_time, everything.late, everything.waiting) == (1, 2, 1)
        assert everything.share_on_time == pytest.approx(1 / 3)
        urgent = rows["urgent"]  # fire hazards: b (late) and c (overdue)
        assert (urgent.received, urgent.on_time, urgent.late) == (2, 0, 2)
        assert urgent.target_minutes == 3.0
        assert urgent.share_on_time == 0.0
        assert rows["low"].share_on_time is None
        mine = {
            r.priority: r
            for r in response_times(
                s, viewers["g1"], first=DAY, last=DAY + dt.timedelta(days=1), now=now
            )
        }
        assert mine["all"].received == 2


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+86 138", "'+86 138"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("普通文字", "普通文字"),
        (None, ""),
        (-12.5, "-12.5"),
        (3, "3"),
        (dt.datetime(2026, 11, 20, 15, 30, tzinfo=dt.UTC), "2026-11-20 23:30"),
    ],
)
def test_safe_cell(value, cell):
    assert safe_cell(value) == cell


def _read(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_export_is_scoped_safe_and_pseudonymous(world):
    factory, viewers, refs, pseudonym = world
    with factory() as s:
        data, n = export_csv(s, viewers["g1"], QueueFilters())
        rows = _read(data)
        assert n == 2 and len(rows) == 3
        assert rows[0][0] == "编号" and len(rows[0]) == len(EXPORT_COLUMNS)
        by_ref = {r[0]: dict(zip(EXPORT_COLUMNS, r, strict=True)) for r in rows[1:]}
        assert set(by_ref) == {refs["a"], refs["b"]}  # G2 and the unplaced tip are not there
        b = by_ref[refs["b"]]
        assert b["description"].startswith("'=HYPERLINK")
        assert b["reporter"] == pseudonym
        assert b["category"] == "火灾隐患"
        assert b["grid"] == "G1" and b["town"] == "测试区"
        assert b["received_at"] == AFTER_MIDNIGHT.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")

        english, _ = export_csv(
            s, viewers["admin"], QueueFilters(category="fire_hazard"), locale="en"
        )
        rows = _read(english)
        assert rows[0][0] == "Reference"
        assert {r[0] for r in rows[1:]} == {refs["b"], refs["c"]}
        assert {r[2] for r in rows[1:]} == {"Fire hazard"}

        _, n = export_csv(s, viewers["town"], QueueFilters(grid="G2"))
        assert n == 1
        _, n = export_csv(
            s,
            viewers["admin"],
            QueueFilters(
                received_from=AFTER_MIDNIGHT,
                received_to=AFTER_MIDNIGHT + dt.timedelta(seconds=1),
            ),
        )
        assert n == 2


def test_export_refuses_too_many_rows(world, monkeypatch):
    factory, viewers, _, _ = world
    monkeypatch.setattr("app.staff.stats.EXPORT_MAX_ROWS", 3)
    with factory() as s, pytest.raises(StatsInvalid) as exc:
        export_csv(s, viewers["admin"], QueueFilters())
    assert exc.value.code == "export_too_large"
