"""Issue 7 end to end: a tip filed through Open311, status changes, the partner's receiver."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from app.partners.delivery import deliver_due
from app.partners.webhooks import add_subscription
from app.people.services import create_staff_user
from app.reports.models import Tip
from app.reports.workflow import apply_action
from app.rewards.models import PointEntry
from tests.integration.test_open311 import PERSON, make_partner, post, spec_post
from tests.integration.test_webhooks import Receiver, _verify

LATER = dt.timedelta(days=1)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _deliver_until_quiet(factory, settings, start: dt.datetime) -> dt.datetime:
    """Run the worker as time passes (no sleeps) until nothing is due any more."""
    now = start
    for _ in range(20):
        if not deliver_due(factory, settings, now=now):
            break
        now += dt.timedelta(minutes=5)
    return now


def test_open311_tip_status_change_reaches_the_partner_once_signed(
    app, client, seeded, settings, receiver
):
    pid, key = make_partner(seeded, settings)
    with seeded() as s:
        _sub, secret = add_subscription(s, settings, pid, receiver.url, None)
        staff = create_staff_user(s, "sup", "supervisor", grids=["C"]).id
        s.commit()

    created = post(client, key, spec_post())
    assert created.status_code == 201, created.json
    ref = created.json[0]["service_request_id"]

    # The receiver is down for the first two tries of every delivery.
    receiver.script = [500, 500]
    now = _deliver_until_quiet(seeded, settings, dt.datetime.now(dt.UTC))
    for action, extra in (("acknowledge", {}), ("resolve", {"outcome": "confirmed"})):
        with seeded() as s:
            tip = s.scalar(select(Tip).where(Tip.ref == ref))
            assert tip.channel == "open311" and tip.grid_id is not None
            apply_action(s, tip.id, actor_id=staff, action=action, now=now, **extra)
            s.commit()
        receiver.script = [500, 500]
        now = _deliver_until_quiet(seeded, settings, now + LATER)
    with seeded() as s:
        points = sum(e.points for e in s.scalars(select(PointEntry)))

    accepted = {}
    for call in receiver.calls:
        _verify(call, secret)
        accepted.setdefault(call["headers"]["webhook-id"], []).append(json.loads(call["body"]))
    events = [bodies[0]["type"] for bodies in accepted.values()]
    assert sorted(events) == ["request.closed", "request.created", "request.updated"]
    # Each delivery failed twice and then went through: three identical tries, no fourth.
    assert all(len(b) == 3 and all(x == b[0] for x in b) for b in accepted.values()), accepted
    closed = next(b[0] for b in accepted.values() if b[0]["type"] == "request.closed")
    assert closed["data"]["service_request_id"] == ref
    assert closed["data"]["status"] == "closed"
    raw = b"".join(c["body"] for c in receiver.calls).decode()
    assert not any(str(v) in raw for v in PERSON.values())
    assert points > 0  # the Open311 reporter earned points like any other
