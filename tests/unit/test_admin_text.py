"""Pure rules of the staff side: safe text, the scope rule, queue cursors, the CSP tile source."""

from __future__ import annotations

import datetime as dt

import pytest

from app.admin.text import duration, show_text
from app.security_headers import _tile_sources
from app.staff.queue import BadCursor, Cursor
from app.staff.scope import Viewer


def test_show_text_escapes_and_reveals_invisible_characters():
    shown = str(show_text("<b>x</b> & \u202eabc\u200b\n第二行"))
    assert "&lt;b&gt;x&lt;/b&gt; &amp;" in shown
    assert "\u202e" not in shown and "\u200b" not in shown
    assert "U+202E" in shown and "U+200B" in shown
    assert "\n第二行" in shown
    assert str(show_text(None)) == ""


def test_duration_in_both_languages():
    assert duration(-90, "zh") == "1 分钟"
    assert duration(3 * 3600, "en") == "3 h"
    assert duration(None, "en") == ""


@pytest.mark.parametrize(
    ("viewer", "path", "visible"),
    [
        (Viewer(1, "admin", sees_all=True, sees_unrouted=True), None, True),
        (Viewer(1, "supervisor", False, True, ("C/T1",)), "C/T1/V1/G1", True),
        (Viewer(1, "supervisor", False, True, ("C/T1",)), "C/T10/V1/G1", False),  # not a prefix
        (Viewer(1, "supervisor", False, True, ("C/T1",)), None, True),
        (Viewer(1, "grid_worker", False, False, ("C/T1/V1/G1",)), "C/T1/V1/G1", True),
        (Viewer(1, "grid_worker", False, False, ("C/T1/V1/G1",)), "C/T1/V1/G2", False),
        (Viewer(1, "grid_worker", False, False, ("C/T1/V1/G1",)), None, False),
        (Viewer(1, "grid_worker", False, False, ()), "C/T1/V1/G1", False),
    ],
)
def test_scope_rule(viewer, path, visible):
    assert viewer.can_see(path) is visible


def test_cursor_round_trip_and_garbage():
    due = dt.datetime(2026, 5, 1, 8, 30, 15, 123456, tzinfo=dt.UTC)
    for cursor in (Cursor(0, due, 42), Cursor(3, None, 7)):
        assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "1.2", "a.b.c", "1.-.x", "1.99999999999999999999999.3"):
        with pytest.raises(BadCursor):
            Cursor.decode(bad)


def test_tile_sources_for_the_csp():
    assert _tile_sources(None) == []
    assert _tile_sources("https://{s}.tile.example.org/{z}/{x}/{y}.png") == [
        "https://*.tile.example.org"
    ]
    assert _tile_sources("https://tiles.example.cn/{z}/{x}/{y}.png") == ["https://tiles.example.cn"]
    assert _tile_sources("javascript:alert(1)") == []
