"""Partner webhooks: a status change reaches a real local receiver once, signed, retried."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from app.db import unit_of_work
from app.outbox.models import OutboxMessage
from app.partners.delivery import (
    claim_deliveries,
    deliver_due,
    lease_seconds,
    post,
    record_result,
    sign,
)
from app.partners.keys import create_partner
from app.partners.models import PartnerRequest, WebhookAttempt, WebhookSubscription
from app.partners.webhooks import (
    InvalidWebhook,
    add_subscription,
    check_target,
    queue_tip_event,
)
from app.people.services import create_staff_user
from app.reports.models import Tip
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.reports.workflow import apply_action
from tests.layers import centre_of

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
BASE = 10.0  # webhook_retry_base_seconds in these tests
DESCRIPTION = "仓库门口有人撬锁 canary-text-7781"


class Receiver:
    """A local HTTP server that answers each POST with the next scripted status."""

    def __init__(self):
        self.calls: list[dict] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.calls.append({"headers": self.headers, "body": body})
                code = receiver.script.pop(0) if receiver.script else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/tipline?token=partner-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def wh_settings(settings):
    return settings.with_(webhook_retry_base_seconds=BASE, webhook_timeout_seconds=5.0)


def _partner_tip(settings, sessions, url, *, events=None, partner=True):
    """Make a partner, its subscription and a tip it filed: (tip_id, ref, staff, sub, secret)."""
    lat, lon = centre_of("G1")
    with unit_of_work(sessions) as s:
        staff = create_staff_user(s, "boss", "admin").id
        p, _key = create_partner(s, settings, name="Alarm Co", organisation="Alarm Co")
        sub, secret = add_subscription(s, settings, p.id, url, events)
        submission = submit_tip(
            s,
            settings,
            LocalMediaStore(settings.media_dir),
            channel="open311",
            reporter_id=p.reporter_id,
            uploads=[],
            fields={
                "category": "theft",
                "description": DESCRIPTION,
                "latitude": lat,
                "longitude": lon,
            },
        )
        s.flush()
        tip_id = s.scalar(select(Tip.id).where(Tip.ref == submission.ref))
        if partner:
            s.add(
                PartnerRequest(
                    partner_id=p.id, tip_id=tip_id, token=f"tok-{tip_id}", service_code="theft"
                )
            )
        return tip_id, submission.ref, staff, sub.id, secret


def _act(sessions, tip_id, staff, action, **kw):
    with unit_of_work(sessions) as s:
        apply_action(s, tip_id, actor_id=staff, action=action, now=kw.pop("now", T0), **kw)


def _verify(call, secret):
    """Check the Standard Webhooks signature independently of the code under test."""
    h = call["headers"]  # header names are case-insensitive here, as in HTTP
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + call["body"]
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = [part.split(",", 1) for part in h["webhook-signature"].split(" ")]
    assert ["v1", expected] in versions


def _rows(sessions):
    with sessions() as s:
        return s.scalars(
            select(OutboxMessage).where(OutboxMessage.recipient_kind == "webhook")
        ).all()


def _attempts(sessions):
    with sessions() as s:
        return s.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)).all()


def test_status_change_reaches_receiver_once_after_two_failures(wh_settings, seeded, receiver):
    tip_id, ref, staff, _sub, secret = _partner_tip(wh_settings, seeded, receiver.url)
    receiver.script = [500, 500, 200]
    _act(seeded, tip_id, staff, "acknowledge")

    assert deliver_due(seeded, wh_settings, now=T0) == {"retry": 1}
    # Backoff honoured: not before base seconds, due after base plus the most jitter.
    assert deliver_due(seeded, wh_settings, now=T0 + dt.timedelta(seconds=BASE - 1)) == {}
    t1 = T0 + dt.timedelta(seconds=BASE * 1.25 + 1)
    assert deliver_due(seeded, wh_settings, now=t1) == {"retry": 1}
    assert deliver_due(seeded, wh_settings, now=t1 + dt.timedelta(seconds=2 * BASE - 1)) == {}
    t2 = t1 + dt.timedelta(seconds=2 * BASE * 1.25 + 1)
    assert deliver_due(seeded, wh_settings, now=t2) == {"sent": 1}
    assert deliver_due(seeded, wh_settings, now=t2 + dt.timedelta(days=1)) == {}

    assert len(receiver.calls) == 3
    assert len({c["headers"]["webhook-id"] for c in receiver.calls}) == 1
    assert len({c["body"] for c in receiver.calls}) == 1
    stamps = [int(c["headers"]["webhook-timestamp"]) for c in receiver.calls]
    assert stamps == [int(t.timestamp()) for t in (T0, t1, t2)]
    for call in receiver.calls:
        _verify(call, secret)
        assert call["headers"]["Content-Type"] == "application/json"
    body = json.loads(receiver.calls[-1]["body"])
    assert body["type"] == "request.updated"
    assert body["data"] == {
        "service_request_id": ref,
        "service_code": "theft",
        "status": "open",
        "status_notes": "in_handling",
        "requested_datetime": body["data"]["requested_datetime"],
        "updated_datetime": T0.isoformat(),
    }
    raw = receiver.calls[-1]["body"].decode()
    assert "canary-text" not in raw and "R-" not in raw and "latitude" not in raw

    [row] = _rows(seeded)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    log = _attempts(seeded)
    assert [(a.attempt, a.status_code) for a in log] == [(1, 500), (2, 500), (3, 200)]
    assert [a.error for a in log] == ["http_500", "http_500", None]
    assert all(a.duration_ms is not None and a.duration_ms >= 0 for a in log)


def test_closing_sends_request_closed_and_a_repeat_queues_nothing(wh_settings, seeded, receiver):
    tip_id, ref, staff, _sub, _secret = _partner_tip(wh_settings, seeded, receiver.url)
    _act(seeded, tip_id, staff, "acknowledge")
    later = T0 + dt.timedelta(minutes=5)
    _act(seeded, tip_id, staff, "resolve", outcome="confirmed", now=later)
    _act(seeded, tip_id, staff, "resolve", outcome="confirmed", now=later)  # a double click
    assert deliver_due(seeded, wh_settings, now=later) == {"sent": 2}
    events = [json.loads(c["body"]) for c in receiver.calls]
    assert sorted(e["type"] for e in events) == ["request.closed", "request.updated"]
    closed = next(e for e in events if e["type"] == "request.closed")
    assert closed["data"]["status"] == "closed"
    assert closed["data"]["status_notes"] == "closed"
    assert closed["data"]["service_request_id"] == ref
    # The same state change queued again (a retry of the caller) is one delivery.
    with unit_of_work(seeded) as s:
        assert queue_tip_event(s, tip_id, "request.closed") == 0


def test_permanent_client_error_fails_at_once(wh_settings, seeded, receiver):
    tip_id, _ref, staff, _sub, _secret = _partner_tip(wh_settings, seeded, receiver.url)
    receiver.script = [404]
    _act(seeded, tip_id, staff, "acknowledge")
    assert deliver_due(seeded, wh_settings, now=T0) == {"failed": 1}
    assert deliver_due(seeded, wh_settings, now=T0 + dt.timedelta(days=2)) == {}
    assert len(receiver.calls) == 1
    [row] = _rows(seeded)
    assert (row.status, row.last_error) == ("failed", "http_404")


def test_gone_disables_the_subscription(wh_settings, seeded, receiver):
    tip_id, _ref, staff, sub_id, _secret = _partner_tip(wh_settings, seeded, receiver.url)
    receiver.script = [410]
    _act(seeded, tip_id, staff, "acknowledge")
    assert deliver_due(seeded, wh_settings, now=T0) == {"gone": 1}
    with seeded() as s:
        assert s.get(WebhookSubscription, sub_id).active is False
    _act(seeded, tip_id, staff, "resolve", outcome="confirmed", now=T0 + dt.timedelta(minutes=1))
    assert len(_rows(seeded)) == 1  # nothing queued for a disabled subscription


def test_retryable_errors_stop_after_max_attempts(wh_settings, seeded, receiver):
    settings = wh_settings.with_(webhook_max_attempts=3)
    tip_id, _ref, staff, _sub, _secret = _partner_tip(settings, seeded, receiver.url)
    receiver.script = [503, 429, 500, 200]
    _act(seeded, tip_id, staff, "acknowledge")
    now = T0
    outcomes = []
    for _ in range(5):
        outcomes.append(deliver_due(seeded, settings, now=now))
        now += dt.timedelta(hours=1)
    assert outcomes == [{"retry": 1}, {"retry": 1}, {"failed": 1}, {}, {}]
    assert len(receiver.calls) == 3
    [row] = _rows(seeded)
    assert (row.status, row.last_error) == ("failed", "http_500")


def test_connection_refused_is_retried(wh_settings, seeded, receiver):
    receiver.close()  # nothing listens on the port any more
    tip_id, _ref, staff, _sub, _secret = _partner_tip(wh_settings, seeded, receiver.url)
    _act(seeded, tip_id, staff, "acknowledge")
    assert deliver_due(seeded, wh_settings, now=T0) == {"retry": 1}
    [attempt] = _attempts(seeded)
    assert attempt.status_code is None
    assert attempt.error.startswith("connection_error")


def test_crash_between_send_and_mark_resends_with_the_same_id(wh_settings, seeded, receiver):
    tip_id, _ref, staff, _sub, secret = _partner_tip(wh_settings, seeded, receiver.url)
    _act(seeded, tip_id, staff, "acknowledge")
    held = lease_seconds(wh_settings, 20)
    with unit_of_work(seeded) as s:
        [delivery] = claim_deliveries(s, now=T0, lease_seconds=held, limit=20)
    result = post(delivery, wh_settings, timestamp=int(T0.timestamp()))
    assert result.status_code == 200
    with seeded() as s:  # the worker dies before its record commits
        record_result(s, wh_settings, delivery, result, now=T0)
        s.rollback()
    # Still leased: no other worker sends it meanwhile.
    assert deliver_due(seeded, wh_settings, now=T0 + dt.timedelta(seconds=held - 1)) == {}
    after = T0 + dt.timedelta(seconds=held + 1)
    assert deliver_due(seeded, wh_settings, now=after) == {"sent": 1}
    assert deliver_due(seeded, wh_settings, now=after + dt.timedelta(days=1)) == {}
    assert len(receiver.calls) == 2
    assert receiver.calls[0]["headers"]["webhook-id"] == receiver.calls[1]["headers"]["webhook-id"]
    assert receiver.calls[0]["body"] == receiver.calls[1]["body"]
    for call in receiver.calls:
        _verify(call, secret)
    [row] = _rows(seeded)
    assert row.status == "sent" and row.attempts == 2


def test_events_filter_and_tips_without_a_partner(wh_settings, seeded, receiver):
    tip_id, _ref, staff, _sub, _secret = _partner_tip(
        wh_settings, seeded, receiver.url, events=["request.closed"]
    )
    _act(seeded, tip_id, staff, "acknowledge")
    assert _rows(seeded) == []  # the subscription does not want request.updated
    _act(seeded, tip_id, staff, "reject", now=T0 + dt.timedelta(minutes=1))
    [row] = _rows(seeded)
    assert row.params["payload"]["type"] == "request.closed"
    # A tip no partner filed: a no-op.
    with unit_of_work(seeded) as s:
        other = submit_tip(
            s,
            wh_settings,
            LocalMediaStore(wh_settings.media_dir),
            channel="api",
            uploads=[],
            fields={"category": "theft", "description": "x", "latitude": 0.0, "longitude": 0.0},
        )
        s.flush()
        other_id = s.scalar(select(Tip.id).where(Tip.ref == other.ref))
        assert queue_tip_event(s, other_id, "request.created") == 0
    _act(seeded, other_id, staff, "acknowledge")
    with seeded() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.recipient_kind == "webhook")
            )
            == 1
        )


def test_private_targets_refused_outside_tests(wh_settings, seeded, receiver):
    prod = wh_settings.with_(testing=False)
    for url in (
        "ftp://example.org/hook",
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost/hook",
        "https://user:pw@93.184.216.34/hook",
        "javascript:alert(1)",
        "http:///nohost",
        "",
    ):
        with pytest.raises(InvalidWebhook):
            check_target(url, prod)
    check_target("https://93.184.216.34/hook", prod)  # a public address
    check_target("http://127.0.0.1:8080/hook", wh_settings)  # tests may use loopback
    check_target("http://127.0.0.1:8080/hook", prod.with_(webhook_allow_private=True))
    # A subscription made while allowed is refused again at delivery time.
    tip_id, _ref, staff, _sub, _secret = _partner_tip(wh_settings, seeded, receiver.url)
    _act(seeded, tip_id, staff, "acknowledge")
    assert deliver_due(seeded, prod, now=T0) == {"failed": 1}
    assert receiver.calls == []
    [row] = _rows(seeded)
    assert row.last_error == "target_refused"


def test_signature_matches_the_standard_webhooks_example():
    # The example of the Standard Webhooks reference libraries.
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_cli_add_list_and_run(settings, engine, session_factory, tmp_path):
    from click.testing import CliRunner

    from app.cli import Context, cli

    with unit_of_work(session_factory) as s:
        create_partner(s, settings, name="Alarm Co")
    env = {
        "DATABASE_URL": settings.database_url,
        "TIPLINE_SECRET_KEY": settings.secret_key,
        "TIPLINE_MEDIA_DIR": str(tmp_path / "media"),
    }

    def run(*args):
        return CliRunner().invoke(cli, list(args), obj=Context(), env=env)

    private = run("webhooks", "add", "Alarm Co", "http://127.0.0.1:8080/hook")
    assert private.exit_code == 2 and "public address" in private.output
    assert run("webhooks", "add", "Nobody", "https://93.184.216.34/hook").exit_code == 2
    made = run(
        "webhooks", "add", "Alarm Co", "https://93.184.216.34/hook", "--event", "request.closed"
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    listed = run("webhooks", "list")
    assert "Alarm Co\trequest.closed\tactive\thttps://93.184.216.34/hook" in listed.output
    assert secret not in listed.output
    ran = run("webhooks", "run")
    assert ran.exit_code == 0 and "nothing due" in ran.output
