"""Partner webhook subscriptions, and queuing their events in the caller's transaction.

An event becomes one outbox row (recipient_kind "webhook", recipient_id = the
subscription) per active subscription of the tip's partner that wants it. The body is
frozen when it is queued, and so is its `webhook-id`: every retry of a delivery sends
the same id and body, so a receiver that saw it once can drop the repeat.

Target addresses (SSRF): only http/https URLs without credentials are taken; outside
tests a URL whose host is, or resolves to, a loopback, private, link-local, reserved or
multicast address is refused when it is added and again before each delivery (a name
may change what it resolves to), unless `settings.webhook_allow_private` is set (a
receiver on the operator's own network). Redirects are never followed.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import insert_unless_exists, utcnow
from app.errors import DomainError, NotFound
from app.outbox.models import OutboxMessage
from app.partners.models import WEBHOOK_EVENTS, Partner, PartnerRequest, WebhookSubscription
from app.reports.models import Tip
from app.reports.reporter_view import reporter_status

WEBHOOK_TEMPLATE = "webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the standard prefix, not a secret)
URL_MAX = 2000
_outbox = OutboxMessage.__table__


class InvalidWebhook(DomainError):
    """The subscription's URL or events cannot be used."""

    code = "validation_error"
    status = 422


class SubscriptionNotFound(NotFound):
    """No such subscription or partner."""


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription as plain values for the admin page and the CLI (never the secret)."""

    id: int
    partner_id: int
    partner_name: str
    url: str
    events: list[str]
    active: bool
    created_at: dt.datetime


# --- target addresses ------------------------------------------------------------------------


def new_secret() -> str:
    """Make a Standard Webhooks signing secret: whsec_ + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _public(address: str) -> bool:
    """Whether an IP address is one the internet routes (not ours, not special)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def allows_private(settings: Settings) -> bool:
    """Whether private and loopback targets are allowed (tests, or the operator said so)."""
    return settings.testing or settings.webhook_allow_private


def check_target(url: str, settings: Settings, *, resolve: bool = True) -> None:
    """Refuse a URL a webhook may not be sent to (raise InvalidWebhook with the reason)."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise InvalidWebhook("bad url", fields={"url": [f"an http(s) URL of at most {URL_MAX}"]})
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidWebhook("bad url", fields={"url": ["not a valid URL"]}) from exc
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidWebhook("bad url", fields={"url": ["must be an http or https URL"]})
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhook("bad url", fields={"url": ["must not carry a user or password"]})
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidWebhook("bad url", fields={"url": ["must not contain spaces"]})
    if allows_private(settings):
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise InvalidWebhook("private target", fields={"url": ["must be a public address"]})
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = _resolve(host) if resolve else []
    if any(not _public(a) for a in addresses):
        raise InvalidWebhook("private target", fields={"url": ["must be a public address"]})


def _resolve(host: str) -> list[str]:
    """Return the addresses a name resolves to now (none if it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [info[4][0] for info in infos]


# --- subscriptions ---------------------------------------------------------------------------


def _check_events(events) -> list[str]:
    """Return the events as a list in a fixed order, refusing unknown ones."""
    chosen = list(events or WEBHOOK_EVENTS)
    unknown = sorted(set(chosen) - set(WEBHOOK_EVENTS))
    if unknown:
        raise InvalidWebhook(
            "unknown event", fields={"events": [f"one or more of {', '.join(WEBHOOK_EVENTS)}"]}
        )
    return [e for e in WEBHOOK_EVENTS if e in chosen]


def add_subscription(
    session: Session,
    settings: Settings,
    partner_id: int,
    url: str,
    events: list[str] | None = None,
) -> tuple[WebhookSubscription, str]:
    """Subscribe a partner's URL to events (all by default); return it and its secret (once)."""
    partner = session.get(Partner, partner_id)
    if partner is None or partner.revoked_at is not None:
        raise SubscriptionNotFound("no such partner")
    url = url.strip() if isinstance(url, str) else url
    check_target(url, settings)
    secret = new_secret()
    sub = WebhookSubscription(
        partner_id=partner_id, url=url, events=_check_events(events), secret=secret, active=True
    )
    session.add(sub)
    session.flush()
    return sub, secret


def disable_subscription(session: Session, subscription_id: int) -> bool:
    """Stop a subscription (pending deliveries then fail); return whether it was active."""
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None:
        raise SubscriptionNotFound("no such subscription")
    was_active = sub.active
    sub.active = False
    session.flush()
    return was_active


def list_subscriptions(session: Session, partner_id: int | None = None) -> list[SubscriptionView]:
    """Return subscriptions (of one partner, or all), newest first, without their secrets."""
    query = (
        select(WebhookSubscription, Partner.name)
        .join(Partner, Partner.id == WebhookSubscription.partner_id)
        .order_by(WebhookSubscription.id.desc())
    )
    if partner_id is not None:
        query = query.where(WebhookSubscription.partner_id == partner_id)
    return [
        SubscriptionView(s.id, s.partner_id, name, s.url, list(s.events), s.active, s.created_at)
        for s, name in session.execute(query).all()
    ]


# --- events ----------------------------------------------------------------------------------


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def request_summary(tip: Tip, service_code: str) -> dict:
    """The Open311 fields a webhook carries: ids, statuses and times, nothing about people."""
    return {
        "service_request_id": tip.ref,
        "service_code": service_code,
        "status": "closed" if not tip.is_open else "open",
        "status_notes": reporter_status(tip.status),
        "requested_datetime": _iso(tip.received_at),
        "updated_datetime": _iso(tip.updated_at or tip.received_at),
    }


def queue_tip_event(session: Session, tip_id: int, event: str, *, now: dt.datetime | None = None):
    """Queue an event about a partner's tip to each subscription that wants it; return how many.

    One indexed look-up when the tip came from no partner. The same state change
    queued twice (a retry, a double click) is one delivery: the dedupe key names the
    subscription, the tip, the event, the status and the time of the change.
    """
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    origin = session.execute(
        select(PartnerRequest.partner_id, PartnerRequest.service_code).where(
            PartnerRequest.tip_id == tip_id
        )
    ).first()
    if origin is None:
        return 0
    subs = session.execute(
        select(WebhookSubscription.id, WebhookSubscription.events)
        .join(Partner, Partner.id == WebhookSubscription.partner_id)
        .where(
            WebhookSubscription.partner_id == origin.partner_id,
            WebhookSubscription.active.is_(True),
            Partner.revoked_at.is_(None),
        )
    ).all()
    wanted = [s.id for s in subs if event in (s.events or ())]
    if not wanted:
        return 0
    tip = session.get(Tip, tip_id)  # the identity map holds the change not yet flushed
    now = now or utcnow()
    data = request_summary(tip, origin.service_code)
    changed = tip.updated_at or tip.received_at
    stamp = int(changed.timestamp() * 1_000_000)
    queued = 0
    conn = session.connection()
    for sub_id in wanted:
        payload = {"type": event, "timestamp": now.isoformat(), "data": data}
        params = {"id": f"msg_{secrets.token_hex(12)}", "payload": payload}
        new_id = insert_unless_exists(
            conn,
            _outbox,
            {
                "recipient_kind": "webhook",
                "recipient_id": sub_id,
                "tip_id": tip_id,
                "template": WEBHOOK_TEMPLATE,
                "params": params,
                "dedupe_key": f"wh:{sub_id}:{tip_id}:{event}:{tip.status}:{stamp}",
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            },
        )
        queued += new_id is not None
    return queued
