"""Intake keeps its write transaction short: reads of cached reference data begin none."""

from __future__ import annotations

import io

from sqlalchemy import event, make_url, select

from app.reports.categories import active_category
from app.reports.models import Tip
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.triage import load_urgent_words
from tests.images import phone_jpeg
from tests.layers import centre_of
from tests.writer_lock import writer_lock_free


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
    seen: list[tuple[int, str]] = []

    def record(conn, cursor, statement, params, context, executemany):
        seen.append((id(conn.connection.dbapi_connection), " ".join(statement.split()).upper()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with seeded() as s:
            submit_tip(s, settings, store, fields=_tip(1, "G4"), uploads=[], channel="api")
            s.commit()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    text = "\n".join(q for _, q in seen)
    for table in ("CATEGORIES", "GRID_LAYERS", "URGENT_WORDS", "RESPONSE_TARGETS"):
        assert table not in text
    writer = {c for c, q in seen if q.startswith("INSERT")}
    assert len(writer) == 1

    def heads(inside: bool) -> list[str]:
        return sorted(
            " ".join(q.split()[:3])
            for c, q in seen
            if (c in writer) == inside and not q.startswith(("BEGIN", "COMMIT", "ROLLBACK"))
        )

    # The two duplicate checks (place, text) in one statement, the tip, its event and the
    # grid workers' messages: nothing else is read or written for an anonymous tip with no
    # duplicate, and nothing is read outside the write transaction either.
    writes = ["INSERT INTO OUTBOX", "INSERT INTO TIP_EVENTS", "INSERT INTO TIPS"]
    assert heads(inside=False) == []
    assert heads(inside=True) == sorted(["SELECT 'T' AS", *writes])
    checks = next(q for _, q in seen if q.startswith("SELECT 'T'"))
    assert "TEXT_HASH =" in checks and "LATITUDE BETWEEN" in checks, checks


def test_a_signed_in_photo_tip_decodes_without_the_writer_lock(
    client, seeded, settings, monkeypatch
):
    """On a SQLite file, nobody else's tip waits while this one's photo is decoded.

    The token lookup, the ban check and the decoding come before the write transaction,
    so another connection can take the writer lock at that moment (without waiting).
    """
    from app.people.services import create_reporter, issue_reporter_token
    from app.reports import services

    with seeded() as s:
        token = issue_reporter_token(s, create_reporter(s, "volunteer").id)
        s.commit()
    real = services._process_all
    free: list[bool | None] = []

    def decode_and_look(settings_, uploads):
        free.append(writer_lock_free(settings.database_url))
        return real(settings_, uploads)

    monkeypatch.setattr(services, "_process_all", decode_and_look)
    lat, lon = centre_of("G2")
    resp = client.post(
        "/api/v1/tips",
        data={
            "category": "theft",
            "description": "电瓶被盗",
            "latitude": str(lat),
            "longitude": str(lon),
            "photos": [(io.BytesIO(phone_jpeg()), "p.jpg")],
        },
        headers={"Authorization": f"Bearer {token}"},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201, resp.json
    assert len(resp.json["photos"]) == 1
    assert free == [True if make_url(settings.database_url).drivername == "sqlite" else None]
    with seeded() as s:
        assert s.scalar(select(Tip.reporter_id).where(Tip.ref == resp.json["ref"])) is not None
