"""QUALITY.md 35: eight processes doing read-modify-write on SQLite lose nothing."""

from __future__ import annotations

import multiprocessing as mp

from sqlalchemy import select

from app.db import make_engine, make_session_factory, unit_of_work
from app.outbox.models import OutboxMessage

PROCESSES, ROUNDS = 8, 40


def _increment(url: str, rounds: int) -> str | None:
    """Read the counter, add one, write it back: the classic lost-update pattern."""
    import app.models  # noqa: F401  (a spawned process starts with no tables registered)

    try:
        factory = make_session_factory(make_engine(url))
        for _ in range(rounds):
            with unit_of_work(factory) as s:
                row = s.scalar(select(OutboxMessage))
                row.attempts = row.attempts + 1
        return None
    except Exception as exc:  # reported to the parent, which fails the test with it
        return repr(exc)


def _submit(url: str, media: str, n: int) -> str | None:
    """Submit tips through the real intake service from one process."""
    from pathlib import Path

    import app.models  # noqa: F401
    from app.config import Settings
    from app.reports.services import submit_tip
    from app.reports.storage import LocalMediaStore

    try:
        settings = Settings(
            database_url=url, secret_key="k", media_dir=Path(media), instance_dir=Path(media)
        )
        factory = make_session_factory(make_engine(url))
        for _ in range(n):
            with unit_of_work(factory) as s:
                submit_tip(
                    s,
                    settings,
                    LocalMediaStore(Path(media)),
                    channel="api",
                    fields={
                        "category": "theft",
                        "description": "x",
                        "latitude": 40.635,
                        "longitude": 122.495,
                    },
                    uploads=[],
                )
        return None
    except Exception as exc:
        return repr(exc)


def test_read_modify_write_loses_no_update(sqlite_url):
    import app.models  # noqa: F401
    from app.db import Base

    engine = make_engine(sqlite_url)
    Base.metadata.create_all(engine)
    with unit_of_work(make_session_factory(engine)) as s:
        s.add(OutboxMessage(recipient_kind="staff", recipient_id=1, template="t", attempts=0))
    with mp.get_context("spawn").Pool(PROCESSES) as pool:
        errors = pool.starmap(_increment, [(sqlite_url, ROUNDS)] * PROCESSES)
    assert errors == [None] * PROCESSES
    with make_session_factory(engine)() as s:
        assert s.scalar(select(OutboxMessage.attempts)) == PROCESSES * ROUNDS


def test_parallel_submissions_all_land(sqlite_url, tmp_path):
    import app.models  # noqa: F401
    from app.db import Base
    from app.reports.models import Tip
    from tests.layers import seed_small

    engine = make_engine(sqlite_url)
    Base.metadata.create_all(engine)
    seed_small(make_session_factory(engine))
    with mp.get_context("spawn").Pool(PROCESSES) as pool:
        errors = pool.starmap(_submit, [(sqlite_url, str(tmp_path / "m"), 10)] * PROCESSES)
    assert errors == [None] * PROCESSES
    with make_session_factory(engine)() as s:
        refs = s.scalars(select(Tip.ref)).all()
    assert len(refs) == len(set(refs)) == PROCESSES * 10
