"""Partners admin page: keys shown once and stored hashed, revocation, subscriptions, the log."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from app.partners.delivery import Result, deliver_due
from app.partners.keys import authenticate_partner
from app.partners.models import Partner, PartnerRequest, WebhookSubscription
from app.partners.webhooks import queue_tip_event
from app.people.models import AuditEntry
from app.reports.workflow import apply_action
from tests.extras import PASSWORD, add_staff, add_tip, sign_in
from tests.layers import centre_of


@pytest.fixture
def staff(seeded):
    with seeded() as s:
        ids = {
            "admin": add_staff(s, "admin", "admin", password=PASSWORD)[0].id,
            "sup": add_staff(s, "sup", "supervisor", ("C",), password=PASSWORD)[0].id,
        }
        s.commit()
    return ids


def _create(client, csrf, **form):
    data = {"csrf_token": csrf, "name": "Alarm Co", "organisation": "安保公司", **form}
    return client.post("/admin/partners", data=data)


def _partner(seeded, name="Alarm Co") -> Partner:
    with seeded() as s:
        return s.scalar(select(Partner).where(Partner.name == name))


def test_create_shows_the_key_once_and_stores_only_its_hash(client, seeded, settings, staff):
    csrf = sign_in(client, "admin")
    response = _create(client, csrf, grid_paths="C/T1\nC/T2")
    assert response.status_code == 201
    [key] = re.findall(r'id="new-key">(tpk_[A-Za-z0-9_\-]+)<', response.text)
    partner = _partner(seeded)
    assert partner.key_prefix == key[:12] and partner.key_hash != key
    assert partner.grid_paths == ["C/T1", "C/T2"]
    assert partner.created_by_id == staff["admin"]
    with seeded() as s:
        assert authenticate_partner(s, settings, key, touch=False).id == partner.id
        entries = s.scalars(select(AuditEntry).where(AuditEntry.target_kind == "partner")).all()
        assert [(e.action, e.staff_id) for e in entries] == [("partner_create", staff["admin"])]
        assert key not in str(entries[0].data)
    # Shown once: neither the partner's page nor the list carries it again.
    page = client.get(f"/admin/partners/{partner.id}")
    assert page.status_code == 200 and key not in page.text and key[:12] in page.text
    listing = client.get("/admin/partners")
    assert key not in listing.text and "Alarm Co" in listing.text and "安保公司" in listing.text
    # The same name again is refused with the form kept, nothing made.
    again = _create(client, csrf)
    assert again.status_code == 409 and 'id="new-key"' not in again.text


def test_revoke_needs_csrf_and_is_audited(client, seeded, settings, staff):
    csrf = sign_in(client, "admin")
    _create(client, csrf)
    partner_id = _partner(seeded).id
    refused = client.post(f"/admin/partners/{partner_id}/revoke")
    assert refused.status_code == 403 and _partner(seeded).revoked_at is None
    response = client.post(f"/admin/partners/{partner_id}/revoke", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert _partner(seeded).revoked_at is not None
    with seeded() as s:
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.target_id == partner_id))
        assert sorted(actions) == ["partner_create", "partner_revoke"]
    assert client.post("/admin/partners/999/revoke", data={"csrf_token": csrf}).status_code == 404


def test_subscriptions_show_the_secret_once_and_refuse_bad_urls(client, seeded, staff):
    csrf = sign_in(client, "admin")
    _create(client, csrf)
    pid = _partner(seeded).id
    bad = client.post(
        f"/admin/partners/{pid}/webhooks",
        data={"csrf_token": csrf, "url": "ftp://example.org/x", "events": ["request.closed"]},
    )
    assert bad.status_code == 422 and "whsec_" not in bad.text
    unknown = client.post(
        f"/admin/partners/{pid}/webhooks",
        data={"csrf_token": csrf, "url": "https://example.org/x", "events": ["request.deleted"]},
    )
    assert unknown.status_code == 422
    made = client.post(
        f"/admin/partners/{pid}/webhooks",
        data={"csrf_token": csrf, "url": "https://example.org/hook", "events": ["request.closed"]},
    )
    assert made.status_code == 201
    [secret] = re.findall(r'id="new-secret">(whsec_[A-Za-z0-9+/=]+)<', made.text)
    with seeded() as s:
        [sub] = s.scalars(select(WebhookSubscription)).all()
        assert (sub.url, sub.events, sub.active, sub.secret) == (
            "https://example.org/hook",
            ["request.closed"],
            True,
            secret,
        )
    page = client.get(f"/admin/partners/{pid}")
    assert secret not in page.text and "https://example.org/hook" in page.text
    off = client.post(f"/admin/partners/{pid}/webhooks/{sub.id}/disable", data={"csrf_token": csrf})
    assert off.status_code == 303
    with seeded() as s:
        assert s.get(WebhookSubscription, sub.id).active is False
        actions = s.scalars(
            select(AuditEntry.action).where(AuditEntry.target_kind == "partner_webhook")
        )
        assert sorted(actions) == ["webhook_add", "webhook_disable"]
    # Another partner's subscription id under this partner: not found.
    assert (
        client.post(
            f"/admin/partners/{pid + 1}/webhooks/{sub.id}/disable", data={"csrf_token": csrf}
        ).status_code
        == 404
    )


def test_delivery_log_lists_attempts(client, seeded, settings, staff):
    csrf = sign_in(client, "admin")
    _create(client, csrf)
    partner = _partner(seeded)
    client.post(
        f"/admin/partners/{partner.id}/webhooks",
        data={"csrf_token": csrf, "url": "http://127.0.0.1:9/hook"},
    )
    with seeded() as s:
        tip = add_tip(s, settings, at=centre_of("G1"), reporter_id=partner.reporter_id)
        s.add(
            PartnerRequest(partner_id=partner.id, tip_id=tip.id, token="t1", service_code="theft")
        )
        s.flush()
        assert queue_tip_event(s, tip.id, "request.created") == 1
        apply_action(s, tip.id, actor_id=staff["admin"], action="acknowledge")
        ref = tip.ref
        s.commit()

    answers = iter([Result(503, 41, "http_503"), Result(None, 7, "timeout")])
    now = dt.datetime.now(dt.UTC)
    assert deliver_due(seeded, settings, now=now, send=lambda *a, **k: next(answers)) == {
        "retry": 2
    }
    page = client.get(f"/admin/partners/{partner.id}")
    assert page.status_code == 200
    log = page.text.split('class="data delivery-log"', 1)[1]
    for text in ("503", "http_503", "41 ms", "timeout", ref, "已受理", "状态更新"):
        assert text in log


def test_only_admins_see_the_pages(client, seeded, staff):
    assert client.get("/admin/partners").status_code == 302  # signed out: to the sign-in page
    csrf = sign_in(client, "sup")
    assert client.get("/admin/partners").status_code == 404
    assert client.get("/admin/partners/1").status_code == 404
    assert _create(client, csrf).status_code == 404
    assert _partner(seeded) is None
    assert "/admin/partners" not in client.get("/admin/").text  # no nav link either


def test_admin_sees_the_nav_link(client, staff):
    sign_in(client, "admin")
    page = client.get("/admin/").text
    assert 'href="/admin/partners"' in page and "合作方接口" in page
