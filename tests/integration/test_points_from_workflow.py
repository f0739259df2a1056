"""Staff decisions in the workflow move the reporter's points through the ledger."""

from __future__ import annotations

from sqlalchemy import select

from app.people.services import create_reporter, create_staff_user
from app.reports.models import Tip
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.workflow import apply_action
from app.rewards.leaderboards import reporter_points
from app.rewards.services import balance_mismatches
from tests.layers import centre_of


def test_confirm_then_retriage_awards_and_reverses(settings, seeded):
    lat, lon = centre_of("G1")
    with seeded() as s:
        reporter = create_reporter(s, "taxi_driver").id
        boss = create_staff_user(s, "boss", "admin").id
        ref = submit_tip(
            s,
            settings,
            LocalMediaStore(settings.media_dir),
            channel="api",
            reporter_id=reporter,
            uploads=[],
            fields={
                "category": "theft",
                "description": "偷电瓶",
                "latitude": lat,
                "longitude": lon,
            },
        ).ref
        s.commit()
        tip_id = s.scalar(select(Tip.id).where(Tip.ref == ref))
        apply_action(s, tip_id, actor_id=boss, action="acknowledge")
        assert reporter_points(s, reporter)["balance"] == 0
        apply_action(s, tip_id, actor_id=boss, action="resolve", outcome="confirmed")
        s.commit()
        confirmed = reporter_points(s, reporter)["balance"]
        # A double click: the same decision again changes nothing.
        apply_action(s, tip_id, actor_id=boss, action="resolve", outcome="confirmed")
        s.commit()
        assert reporter_points(s, reporter)["balance"] == confirmed > 0
        apply_action(s, tip_id, actor_id=boss, action="set_outcome", outcome="unfounded")
        s.commit()
        assert reporter_points(s, reporter)["balance"] == 0
        assert balance_mismatches(s) == []
