"""The same Idempotency-Key sent concurrently makes one tip, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import func, select

from app.db import unit_of_work
from app.reports.models import Tip
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from tests.layers import centre_of

THREADS = 8


def test_concurrent_retries_make_one_tip(settings, seeded):
    key = str(uuid.uuid4())
    lat, lon = centre_of("G2")
    fields = {
        "category": "fire_hazard",
        "description": "楼道堆放杂物 着火隐患",
        "latitude": lat,
        "longitude": lon,
    }
    store = LocalMediaStore(settings.media_dir)
    barrier = threading.Barrier(THREADS)
    results, errors = [], []

    def send() -> None:
        barrier.wait()
        try:
            with unit_of_work(seeded) as s:
                result = submit_tip(
                    s,
                    settings,
                    store,
                    fields=fields,
                    uploads=[],
                    channel="api",
                    idempotency_key=key,
                )
            results.append(result)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.body["ref"] for r in results}) == 1
    assert len({r.body["receipt"] for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Tip)) == 1
