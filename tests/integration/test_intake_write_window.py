"""Intake keeps its write transaction short: reads of cached reference data begin none."""

from __future__ import annotations

import fcntl
import io
import os

from sqlalchemy import event, func, make_url, select

from app.db import utcnow
from app.reports.categories import active_category
from app.reports.duplicates import plan_links, read_window, text_hash
from app.reports.models import Incident, Tip
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.triage import load_urgent_words
from tests.images import phone_jpeg
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

    # The tip, its event and the grid workers' messages are the writes. The two duplicate
    # checks (place, text) are one statement; on a SQLite file it runs before the writer
    # lock, on a snapshot of its own, and inside only the tips committed since are read.
    writes = ["INSERT INTO OUTBOX", "INSERT INTO TIP_EVENTS", "INSERT INTO TIPS"]
    if engine.dialect.name == "sqlite":
        assert heads(inside=False) == ["SELECT 'T' AS", "SELECT MAX(TIPS.ID) AS"]
        assert heads(inside=True) == sorted(["SELECT TIPS.ID, TIPS.CATEGORY_ID,", *writes])
    else:
        assert heads(inside=False) == []
        assert heads(inside=True) == sorted(["SELECT 'T' AS", *writes])
    checks = next(q for _, q in seen if q.startswith("SELECT 'T'"))
    assert "TEXT_HASH =" in checks and "LATITUDE BETWEEN" in checks, checks


def test_a_tip_committed_after_the_early_read_is_caught_up(settings, seeded):
    """A duplicate committed between the read outside the lock and the write is still seen.

    Tip X is in the window the early read saw, without an incident; Y arrives after it,
    at the same place, and starts an incident with X; Z, elsewhere, has the same text. The
    new tip must join that incident (X's incident is read afresh, Y is caught up), not
    start a second one, and find Z's text.
    """
    store = LocalMediaStore(settings.media_dir)
    with seeded() as s:
        x = submit_tip(s, settings, store, fields=_tip(10, "G4"), uploads=[], channel="api")
        s.commit()
    lat, lon = centre_of("G4")
    now = utcnow()
    with seeded() as s:
        theft = active_category(s, "theft")
        checks = dict(
            category_id=theft.id,
            latitude=lat,
            longitude=lon,
            received_at=now,
            text_digest=text_hash("电瓶被盗 battery stolen 12"),
        )
        early = read_window(s.connection(), settings, **checks)
        s.rollback()
    assert [r.id for r in early.near_rows] == [_tip_id(seeded, x.ref)]
    with seeded() as s:
        y = submit_tip(s, settings, store, fields=_tip(12, "G4"), uploads=[], channel="api")
        z = submit_tip(s, settings, store, fields=_tip(12, "G1"), uploads=[], channel="api")
        s.commit()
    x_id, y_id, z_id = (_tip_id(seeded, t.ref) for t in (x, y, z))
    with seeded() as s:
        plan = plan_links(
            s.connection(), settings, reporter_id=None, phashes=[], earlier=early, **checks
        )
        incident = s.scalar(select(Tip.incident_id).where(Tip.id == y_id))
        assert incident is not None and plan.incident_id == incident
        assert s.scalar(select(func.count()).select_from(Incident)) == 1
        linked = {(other, kind) for other, kind, _ in plan.links}
        assert {(x_id, "same_incident"), (y_id, "same_incident")} <= linked
        # Z, far away, has the new tip's text: caught up as a text link. Y has it too, but
        # is tied already as one incident (no second link for the same pair).
        assert (z_id, "same_text") in linked and (z_id, "same_incident") not in linked
        assert (y_id, "same_text") not in linked
        s.rollback()


def _tip_id(seeded, ref: str) -> int:
    with seeded() as s:
        return s.scalar(select(Tip.id).where(Tip.ref == ref))


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
    free: list[bool] = []

    def decode_and_look(settings_, uploads):
        url = make_url(settings.database_url)
        if url.get_backend_name() == "sqlite":  # PostgreSQL has no such lock: rows are locked
            path = url.database
            fd = os.open(os.path.abspath(path) + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                free.append(True)
            except BlockingIOError:
                free.append(False)
            finally:
                os.close(fd)
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
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        assert free == [True]
    with seeded() as s:
        assert s.scalar(select(Tip.reporter_id).where(Tip.ref == resp.json["ref"])) is not None
