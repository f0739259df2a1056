"""Rate limits (QUALITY.md 27), bans that bite at once, and trust from past outcomes."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from sqlalchemy import func, select, update

from app import create_app
from app.errors import DomainError
from app.i18n import t
from app.people.models import AuditEntry, Reporter
from app.people.services import create_reporter, create_staff_user, issue_reporter_token
from app.ratelimit import MemoryLimiter, RedisLimiter
from app.reports.abuse import ban_reporter, suspend_reporter, unban_reporter
from app.reports.errors import RateLimited, ReporterBlocked
from app.reports.models import Tip
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.triage import reporter_trust
from tests.layers import centre_of

REDIS_URL = os.environ.get("TEST_REDIS_URL")
LAT, LON = centre_of("G2")


def body(text: str = "可疑人员在小区徘徊 someone loitering") -> dict:
    return {"category": "suspicious", "description": text, "latitude": LAT, "longitude": LON}


def post(client, *, token=None, key=None, addr="127.0.0.1", text=None):
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if key:
        headers["Idempotency-Key"] = key
    return client.post(
        "/api/v1/tips",
        data=json.dumps(body(text) if text else body()),
        headers=headers,
        content_type="application/json",
        environ_base={"REMOTE_ADDR": addr},
    )


def count_tips(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Tip))


@pytest.fixture
def reporter(seeded, settings):
    """A reporter with an API token, and a supervisor to act on them."""
    with seeded() as s:
        r = create_reporter(s, "taxi_driver")
        token = issue_reporter_token(s, r.id)
        staff = create_staff_user(s, "sup", "supervisor", grids=["C"])
        s.commit()
        return r.id, token, staff.id


@pytest.fixture
def make_app(settings, engine, seeded):
    """Build extra app instances (other settings, or a second worker on the same database)."""
    made = []

    def _make(**changes):
        application = create_app(settings.with_(**changes))
        made.append(application)
        return application

    yield _make
    for application in made:
        application.extensions["tipline"].engine.dispose()


# --- QUALITY.md 27 ------------------------------------------------------------------------------


def test_100_tips_a_minute_from_one_reporter_get_429_after_the_limit(client, seeded, reporter):
    _, token, _ = reporter
    statuses = []
    for _ in range(100):
        resp = post(client, token=token)
        statuses.append(resp.status_code)
    assert statuses == [201] * 10 + [429] * 90  # the documented 10 a minute
    assert resp.json["code"] == "rate_limited"
    assert "at most 10 a minute and 60 an hour" in resp.json["message"]
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert count_tips(seeded) == 10


def test_the_hourly_limit_holds_when_the_minute_frees_up(seeded, settings, reporter):
    reporter_id, _, _ = reporter

    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    clock = Clock()
    limiter = MemoryLimiter(clock)
    store = LocalMediaStore(settings.media_dir)
    accepted = 0
    for minute in range(8):
        clock.now = minute * 61.0
        for _ in range(10):
            with seeded() as s:
                try:
                    submit_tip(
                        s,
                        settings,
                        store,
                        fields=body(f"第{minute}分钟 tip {accepted}"),
                        uploads=[],
                        channel="telegram",
                        reporter_id=reporter_id,
                        limiter=limiter,
                    )
                    s.commit()
                    accepted += 1
                except RateLimited as exc:
                    assert exc.retry_after >= 1
                    assert t("abuse.rate_limited", "zh", **exc.params).startswith("提交过于频繁")
    assert accepted == 60  # 10 a minute for six minutes, then the hour is full


def test_a_replay_does_not_count_twice(make_app, seeded, reporter):
    _, token, _ = reporter
    client = make_app(tips_per_minute=3).test_client()
    first = str(uuid.uuid4())
    assert post(client, token=token, key=first).status_code == 201
    for _ in range(5):
        replay = post(client, token=token, key=first)
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert post(client, token=token, key=str(uuid.uuid4())).status_code == 201
    assert post(client, token=token, key=str(uuid.uuid4())).status_code == 201
    refused = post(client, token=token, key=str(uuid.uuid4()))
    assert refused.status_code == 429 and "at most 3 a minute" in refused.json["message"]
    # the original may still be fetched by its key once over the limit
    assert post(client, token=token, key=first).status_code == 201
    assert count_tips(seeded) == 3


def test_anonymous_callers_are_limited_per_address_never_storing_it(make_app, seeded):
    application = make_app(anonymous_tips_per_minute=2)
    client = application.test_client()
    assert [post(client, addr="203.0.113.9").status_code for _ in range(3)] == [201, 201, 429]
    assert post(client, addr="198.51.100.4").status_code == 201  # another caller
    assert post(client).status_code == 201  # loopback: a local tool or proxy, not counted
    limiter = application.extensions["tipline"].limiter
    assert not any("203.0.113.9" in key for key in limiter._events)
    with seeded() as s:
        stored = " ".join(
            json.dumps(list(row), default=str) for row in s.execute(select(Tip.__table__))
        )
    assert "203.0.113.9" not in stored


def test_a_failing_limiter_lets_tips_through(seeded, settings, reporter):
    class Broken:
        def hit(self, *args):
            raise ConnectionError("redis down")

    with seeded() as s:
        result = submit_tip(
            s,
            settings,
            LocalMediaStore(settings.media_dir),
            fields=body(),
            uploads=[],
            channel="api",
            reporter_id=reporter[0],
            limiter=Broken(),
        )
    assert result.status_code == 201


@pytest.mark.skipif(not REDIS_URL, reason="Redis cases need TEST_REDIS_URL (CI sets it)")
def test_the_limit_is_shared_between_two_app_instances(make_app, seeded, reporter):
    _, token, _ = reporter
    prefix = f"test:{uuid.uuid4().hex}:"
    workers = [make_app(redis_url=REDIS_URL) for _ in range(2)]
    for application in workers:
        application.extensions["tipline"].limiter = RedisLimiter(REDIS_URL, prefix=prefix)
    clients = [application.test_client() for application in workers]
    statuses = [post(clients[i % 2], token=token).status_code for i in range(14)]
    assert statuses == [201] * 10 + [429] * 4
    assert count_tips(seeded) == 10


# --- bans ---------------------------------------------------------------------------------------


def test_a_ban_takes_effect_at_once_and_is_audited(client, seeded, settings, reporter):
    reporter_id, token, staff_id = reporter
    store = LocalMediaStore(settings.media_dir)

    def submit():
        with seeded() as s:
            result = submit_tip(
                s,
                settings,
                store,
                fields=body(),
                uploads=[],
                channel="telegram",
                reporter_id=reporter_id,
            )
            s.commit()
            return result

    assert post(client, token=token).status_code == 201
    assert submit().status_code == 201
    with seeded() as s:
        ban_reporter(s, reporter_id, actor_id=staff_id, reason="重复提交虚假线索 fake tips")
        s.commit()
    with pytest.raises(ReporterBlocked) as refused:
        submit()  # the bot's path: the very next tip
    assert (refused.value.status, refused.value.code) == (403, "reporter_banned")
    assert "banned" not in refused.value.message and "fake" not in refused.value.message
    api = post(client, token=token)
    assert (api.status_code, api.json["code"]) == (403, "reporter_banned")  # the API alike
    assert count_tips(seeded) == 2

    with seeded() as s:
        unban_reporter(s, reporter_id, actor_id=staff_id)
        s.commit()
    assert submit().status_code == 201
    with seeded() as s:
        suspend_reporter(s, reporter_id, actor_id=staff_id, reason="review")
        s.commit()
    with pytest.raises(ReporterBlocked) as suspended:
        submit()
    assert suspended.value.code == "reporter_suspended"
    assert suspended.value.message == refused.value.message  # nothing told apart
    with seeded() as s:
        audit = s.execute(
            select(
                AuditEntry.action, AuditEntry.staff_id, AuditEntry.target_id, AuditEntry.data
            ).order_by(AuditEntry.id)
        ).all()
    assert [(a, who, target) for a, who, target, _ in audit] == [
        ("reporter_ban", staff_id, reporter_id),
        ("reporter_unban", staff_id, reporter_id),
        ("reporter_suspend", staff_id, reporter_id),
    ]
    assert audit[0].data == {"from": "active", "to": "banned"}


def test_a_ban_needs_a_reason_and_a_reporter(seeded, reporter):
    reporter_id, _, staff_id = reporter
    with seeded() as s:
        with pytest.raises(DomainError) as no_reason:
            ban_reporter(s, reporter_id, actor_id=staff_id, reason="  ")
        assert no_reason.value.code == "reason_required"
        with pytest.raises(DomainError) as missing:
            ban_reporter(s, 999_999, actor_id=staff_id, reason="x")
        assert missing.value.status == 404
        assert s.get(Reporter, reporter_id).status == "active"


# --- trust ---------------------------------------------------------------------------------------


def test_trust_comes_from_closed_tips_and_moves_priority(seeded, settings, reporter):
    reporter_id, _, _ = reporter
    store = LocalMediaStore(settings.media_dir)

    def submit(text):
        with seeded() as s:
            result = submit_tip(
                s,
                settings,
                store,
                fields={"category": "theft", "description": text},
                uploads=[],
                channel="telegram",
                reporter_id=reporter_id,
            )
            s.commit()
            return s.scalar(select(Tip).where(Tip.ref == result.ref))

    first = [submit(f"车棚电瓶被盗 {i}") for i in range(3)]
    with seeded() as s:
        assert reporter_trust(s.connection(), reporter_id) is None  # nothing closed yet
        assert reporter_trust(s.connection(), None) is None
        s.execute(update(Tip).where(Tip.id.in_([x.id for x in first])).values(outcome="confirmed"))
        s.commit()
        assert reporter_trust(s.connection(), reporter_id) == pytest.approx(0.8)
    trusted = submit("battery stolen again")
    assert {"rule": "trusted_reporter", "points": 1, "detail": "0.80"} in trusted.priority_reasons
    with seeded() as s:
        s.execute(update(Tip).where(Tip.id == trusted.id).values(outcome="malicious"))
        s.execute(update(Tip).where(Tip.id == first[0].id).values(outcome="malicious"))
        s.commit()
        # 2 confirmed, 2 malicious of 4: (2 + 1) / (4 + 2 + 2 * 2)
        assert reporter_trust(s.connection(), reporter_id) == pytest.approx(0.3)
        s.execute(update(Tip).where(Tip.id == first[1].id).values(outcome="unfounded"))
        s.commit()
    doubted = submit("又被偷了")
    assert any(r["rule"] == "untrusted_reporter" for r in doubted.priority_reasons)
    assert (trusted.priority, doubted.priority) == ("high", "normal")  # 5 + 1; 5 - 2


def _via_proxy(client, forwarded: str):
    """A tip that reached gunicorn through a same-host proxy naming the client."""
    return client.post(
        "/api/v1/tips",
        data=json.dumps(body()),
        content_type="application/json",
        headers={"X-Forwarded-For": forwarded},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )


def test_behind_a_proxy_each_client_has_its_own_limit(make_app, seeded):
    client = make_app(anonymous_tips_per_minute=2, proxy_hops=1).test_client()
    assert [_via_proxy(client, "203.0.113.9").status_code for _ in range(3)] == [201, 201, 429]
    assert _via_proxy(client, "198.51.100.4").status_code == 201
    # A client cannot pick its own address: only the hop the proxy appended counts.
    spoofed = [_via_proxy(client, f"192.0.2.{n}, 203.0.113.9").status_code for n in range(2)]
    assert spoofed == [429, 429]


def test_without_proxy_hops_a_forwarded_header_is_ignored(make_app, seeded):
    client = make_app(anonymous_tips_per_minute=2).test_client()
    # The peer is loopback (a local tool): the header names no one and nothing is limited.
    assert [_via_proxy(client, "203.0.113.9").status_code for _ in range(4)] == [201] * 4
