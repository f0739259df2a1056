"""Intake keeps its write transaction short: reads of cached reference data begin none."""

from __future__ import annotations

from sqlalchemy import event

from app.reports.categories import active_category
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.triage import load_urgent_words
from tests.layers import centre_of


def _tip(n: int, grid: str = "G1") -> dict:
    lat, lon = centre_of(grid)
    return {
        "category": "theft",
        "description": f"电瓶被盗 battery stolen {n}",
        "latitude": lat,
        "longitude": lon,
        "accuracy_m": 10,
    }


def test_a_cache_hit_on_a_session_begins_no_transaction(seeded):
    with seeded() as s:
        active_category(s, "theft")  # the first use loads, beginning a transaction
        load_urgent_words(s)
        s.rollback()
        assert not s.in_transaction()
        assert active_category(s, "theft").code == "theft"
        assert load_urgent_words(s)
        assert not s.in_transaction()


def test_a_text_tip_runs_only_its_checks_and_inserts_inside_the_transaction(
    settings, seeded, engine
):
    store = LocalMediaStore(settings.media_dir)
    with seeded() as s:  # warm the per-process caches (categories, layer, words, targets)
        submit_tip(s, settings, store, fields=_tip(0), uploads=[], channel="api")
        s.commit()
    seen: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):
        seen.append(" ".join(statement.split()).upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        with seeded() as s:
            submit_tip(s, settings, store, fields=_tip(1, "G4"), uploads=[], channel="api")
            s.commit()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    text = "\n".join(seen)
    for table in ("CATEGORIES", "GRID_LAYERS", "URGENT_WORDS", "RESPONSE_TARGETS"):
        assert table not in text
    # The two duplicate checks (place, text) in one statement, the tip, its event and the
    # grid workers' messages: nothing else is read or written for a tip with no duplicate.
    heads = [" ".join(q.split()[:3]) for q in seen if not q.startswith("BEGIN")]
    expected = [
        "SELECT 'T' AS",
        "INSERT INTO TIPS",
        "INSERT INTO TIP_EVENTS",
        "INSERT INTO OUTBOX",
    ]
    assert sorted(heads) == sorted(expected), seen
    checks = next(q for q in seen if q.startswith("SELECT"))
    assert "TEXT_HASH =" in checks and "LATITUDE BETWEEN" in checks, checks
