"""Partner webhook subscriptions, and queuing their events in the caller's transaction.

An event becomes one outbox row (recipient_kind "webhook", recipient_id = the
subscription) per active subscription of the tip's partner that wants it. The body is
frozen when it is queued, and so is its `webhook-id`: every retry of a delivery sends
the same id and body, so a receiver that saw it once can drop the repeat.

Target addresses (SSRF): only http/https URLs without credentials are taken; outside
tests a URL whose host is, or resolves to, a loopback, private, link-local, reserved or
multicast address is refused when it is added, unless `settings.webhook_allow_private`
is set (a receiver on the operator's own network). Each delivery attempt resolves the
name once more (a name may change what it resolves to), checks every address it got,
and connects only to those (`pin_target`): a second look-up at connect time would let a
hostile DNS server answer a public address to the check and an internal one to the
connection (DNS rebinding). Redirects are never followed.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

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


# IPv6 ranges that lead to an IPv4 address (checked as that address) or nowhere public.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # a site's own translator
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated; some kernels tunnel it to IPv4


def _public(address: str) -> bool:
    """Whether an IP address is one the internet routes (not ours, not special)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _V4_COMPATIBLE or ip in _NAT64_LOCAL:
            return False
        if ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        else:
            ip = ip.ipv4_mapped or ip.sixtofour or ip
    return ip.is_global and not ip.is_multicast


def allows_private(settings: Settings) -> bool:
    """Whether private and loopback targets are allowed (tests, or the operator said so)."""
    return settings.testing or settings.webhook_allow_private


class TargetNotPinned(InvalidWebhook):
    """This attempt's look-up gave no address it may connect to (a name's answer may change)."""

    def __init__(self, reason: str):
        super().__init__(reason, fields={"url": ["must resolve to public addresses only"]})
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the URL's host (Host header, SNI, certificate) and its addresses.

    `addresses` are (family, sockaddr) pairs in the resolver's order, every one checked.
    """

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[tuple[int, tuple], ...]


def _parse(url: str) -> tuple[SplitResult, str, int | None]:
    """Return the parts of a URL a webhook may be sent to (raise InvalidWebhook if none)."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise InvalidWebhook("bad url", fields={"url": [f"an http(s) URL of at most {URL_MAX}"]})
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidWebhook("bad url", fields={"url": ["not a valid URL"]}) from exc
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidWebhook("bad url", fields={"url": ["must be an http or https URL"]})
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhook("bad url", fields={"url": ["must not carry a user or password"]})
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidWebhook("bad url", fields={"url": ["must not contain spaces"]})
    return parts, host, port


def _literal(host: str) -> bool:
    """Whether the host is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _refuse_private_host(host: str) -> None:
    """Refuse a host that is private by its spelling alone (localhost, a private IP literal)."""
    if host == "localhost" or host.endswith(".localhost"):
        raise InvalidWebhook("private target", fields={"url": ["must be a public address"]})
    if _literal(host) and not _public(host):
        raise InvalidWebhook("private target", fields={"url": ["must be a public address"]})


def check_target(url: str, settings: Settings, *, resolve: bool = True) -> None:
    """Refuse a URL a webhook may not be sent to (raise InvalidWebhook with the reason)."""
    _parts, host, port = _parse(url)
    if allows_private(settings):
        return
    _refuse_private_host(host)
    # A name that does not resolve yet is taken: its deliveries retry until it does.
    addresses = _resolve(host, port) if resolve and not _literal(host) else []
    if any(not _public(sockaddr[0]) for _family, sockaddr in addresses):
        raise InvalidWebhook("private target", fields={"url": ["must be a public address"]})


def pin_target(url: str, settings: Settings) -> Target:
    """Resolve a URL's host once, check every address, and return them for the connection.

    Raises InvalidWebhook when the URL itself can never be used, and TargetNotPinned
    (reason "target_unresolved" or "target_private") when this look-up gave nothing
    usable: a name's answer may change, so that attempt is retried like any other.
    """
    parts, host, port = _parse(url)
    private_ok = allows_private(settings)
    if not private_ok:
        _refuse_private_host(host)
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not addresses:
        raise TargetNotPinned("target_unresolved")
    if not private_ok and any(not _public(sockaddr[0]) for _family, sockaddr in addresses):
        raise TargetNotPinned("target_private")  # one bad answer spoils the set
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, path, tuple(addresses))


def _resolve(host: str, port: int | None) -> list[tuple[int, tuple]]:
    """Return the (family, sockaddr) pairs a host resolves to now, in order (none on failure).

    The one place webhooks look a name up: the check and the connection share its answer.
    """
    flags = socket.AI_NUMERICHOST if _literal(host) else 0  # an IP literal needs no DNS
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    except (OSError, UnicodeError):
        return []
    out: list[tuple[int, tuple]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        pair = (family, tuple(sockaddr))
        if family in (socket.AF_INET, socket.AF_INET6) and pair not in out:
            out.append(pair)
    return out


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
