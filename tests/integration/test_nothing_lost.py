"""QUALITY.md 9, 32 and 33: crashes, full disks and busy decoders lose nothing."""

from __future__ import annotations

import errno
import io
import os
import threading
import uuid

from sqlalchemy import func, select

from app.db import unit_of_work
from app.reports import photos as photo_module
from app.reports.models import Photo, Tip
from app.reports.services import Upload, submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.sweeper import sweep_orphans
from tests.images import phone_jpeg
from tests.layers import centre_of


def fields(code="G1"):
    lat, lon = centre_of(code)
    return {"category": "traffic", "description": "红绿灯坏了", "latitude": lat, "longitude": lon}


def files_in(store: LocalMediaStore) -> set[str]:
    return {key for key, _ in store.iter_keys()}


def count(factory, model) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model))


class Crash(BaseException):
    """Stands in for SIGKILL between the photo write and the commit."""


def test_crash_before_commit_then_retry_gives_one_tip_and_no_orphans(settings, seeded):
    store = LocalMediaStore(settings.media_dir)
    key = str(uuid.uuid4())
    upload = [Upload(phone_jpeg(800, 600, gps=None), "p.jpg")]
    try:
        with unit_of_work(seeded) as s:
            submit_tip(
                s,
                settings,
                store,
                fields=fields(),
                uploads=upload,
                channel="api",
                idempotency_key=key,
            )
            raise Crash
    except Crash:
        pass
    assert count(seeded, Tip) == 0
    orphans = files_in(store)
    assert len(orphans) == 2  # derivative and thumbnail, written before the commit
    # Within the grace period the sweeper keeps them (their tip may be committing).
    with unit_of_work(seeded) as s:
        assert sweep_orphans(s, store, grace_seconds=3600) == 0
    # The client retries with the same key: exactly one tip, with its photo.
    with unit_of_work(seeded) as s:
        result = submit_tip(
            s, settings, store, fields=fields(), uploads=upload, channel="api", idempotency_key=key
        )
    assert result.status_code == 201 and not result.replayed
    with unit_of_work(seeded) as s:
        assert sweep_orphans(s, store, grace_seconds=0) == 0  # every file has its row
        keys = {k for p in s.scalars(select(Photo)) for k in (p.derivative_key, p.thumbnail_key)}
    assert keys == files_in(store)
    assert count(seeded, Tip) == 1


def test_sweeper_removes_files_without_rows_after_grace(settings, seeded):
    store = LocalMediaStore(settings.media_dir)
    stray = store.put(phone_jpeg(300, 200, gps=None))
    with unit_of_work(seeded) as s:
        submit_tip(
            s,
            settings,
            store,
            fields=fields(),
            channel="api",
            uploads=[Upload(phone_jpeg(500, 400, gps=None))],
        )
    with unit_of_work(seeded) as s:
        assert sweep_orphans(s, store, grace_seconds=0) == 1
    assert stray not in files_in(store) and len(files_in(store)) == 2


def test_disk_full_is_503_and_leaves_nothing(client, seeded, settings, monkeypatch):
    real_write = os.write

    def full_disk(fd, data):
        if len(data) > 10_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    resp = client.post(
        "/api/v1/tips",
        content_type="multipart/form-data",
        data={**fields(), "photos": [(io.BytesIO(phone_jpeg(1200, 900)), "big.jpg")]},
    )
    assert resp.status_code == 503, resp.json
    assert resp.headers["Retry-After"]
    assert resp.json["code"] == "storage_unavailable"
    assert count(seeded, Tip) == 0
    tmp = settings.media_dir / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    assert files_in(LocalMediaStore(settings.media_dir)) == set()


def test_busy_decoders_answer_503_with_retry_after(settings, engine, seeded):
    """With every decoder slot held, a photo waits its turn, then gets 503, not a crash."""
    from app import create_app

    app = create_app(settings.with_(decode_slots=1, decode_wait_seconds=0.2))
    slots = photo_module.decode_slots  # the one slot this app configured
    release = threading.Event()
    held = threading.Event()
    holder = threading.Thread(target=_hold, args=(slots, held, release))
    holder.start()
    held.wait(5)
    try:
        resp = app.test_client().post(
            "/api/v1/tips",
            content_type="multipart/form-data",
            data={**fields(), "photos": [(io.BytesIO(phone_jpeg(200, 150)), "a.jpg")]},
        )
    finally:
        release.set()
        holder.join()
    assert resp.status_code == 503 and resp.json["code"] == "busy"
    assert int(resp.headers["Retry-After"]) >= 1
    assert count(seeded, Tip) == 0
    photo_module.configure_decode_slots(settings.decode_slots)


def _hold(slots, held: threading.Event, release: threading.Event) -> None:
    with slots.hold(timeout=5):
        held.set()
        release.wait(5)
