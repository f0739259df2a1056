"""The webhook worker: claim due webhook rows, POST them signed, log each try, retry or finish.

Signatures follow Standard Webhooks (standardwebhooks.com): headers `webhook-id`,
`webhook-timestamp` (Unix seconds of this try) and `webhook-signature: v1,<base64
HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64 part of the
subscription's `whsec_` secret. The id and the body were frozen when the event was
queued, so every try of one delivery carries the same `webhook-id`.

Each try resolves the URL's host once, checks every address (app.partners.webhooks.
pin_target) and connects only to those, keeping the name for the Host header, SNI and
the certificate check (app.partners.pinned_http): no second look-up a rebinding DNS
server could answer differently.

Outcomes: 2xx → sent (never again); 410 → failed and the subscription disabled; any
other 4xx but 408/429, any redirect (never followed), and a URL that may never be
used ("target_refused") → failed for good; 408/429/5xx, timeouts, connection errors,
and a name that resolves to nothing ("target_unresolved") or to any non-public
address ("target_private") → retried with exponential backoff and jitter until
`webhook_max_attempts`, then failed. Delivery is at least once: a worker that dies
between the POST and recording it leaves the row leased, and when the lease runs out
it is sent again with the same `webhook-id` — receivers must drop an id they have
already handled. Several workers (the bot process, `tipline webhooks run`) may run
at once: claims skip each other's locked rows and leases.

Logs carry the outbox id and the outcome, never the URL or its host (its path or query
may hold a partner's token), the addresses, the secret or the body.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import logging
import math
import random
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import unit_of_work, utcnow
from app.outbox.claims import any_due, claim_due
from app.outbox.models import OutboxMessage
from app.partners.models import Partner, WebhookAttempt, WebhookSubscription
from app.partners.pinned_http import PinnedHTTPConnection, PinnedHTTPSConnection
from app.partners.webhooks import (
    SECRET_PREFIX,
    InvalidWebhook,
    Target,
    TargetNotPinned,
    pin_target,
)

log = logging.getLogger("tipline.partners.delivery")
KINDS = ("webhook",)
PARALLEL = 4  # posts in flight per worker: one slow receiver does not hold up the others
RETRY_CAP_SECONDS = 6 * 3600
_outbox = OutboxMessage.__table__


@dataclass(frozen=True)
class Delivery:
    """A claimed webhook row, as plain values: where it goes and the exact bytes it sends."""

    outbox_id: int
    subscription_id: int
    url: str
    secret: str
    webhook_id: str
    body: bytes
    attempt: int


@dataclass(frozen=True)
class Result:
    """What one POST came to: the HTTP status (None if there was none) and why not 2xx."""

    status_code: int | None
    duration_ms: int
    error: str | None = None
    retry_after: float | None = None


# --- signing ---------------------------------------------------------------------------------


def body_bytes(payload: dict) -> bytes:
    """Serialise a payload the same way every time (the signature covers these bytes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` value for one try."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


# --- database side ---------------------------------------------------------------------------


def claim_deliveries(
    session: Session, *, now: dt.datetime, lease_seconds: float, limit: int
) -> list[Delivery]:
    """Lease due webhook rows; rows whose subscription is gone, disabled or revoked fail at once."""
    rows = claim_due(session, KINDS, now=now, lease_seconds=lease_seconds, limit=limit)
    if not rows:
        return []
    subs = {
        s.id: s
        for s in session.execute(
            select(
                WebhookSubscription.id,
                WebhookSubscription.url,
                WebhookSubscription.secret,
                (WebhookSubscription.active & Partner.revoked_at.is_(None)).label("active"),
            )
            .join(Partner, Partner.id == WebhookSubscription.partner_id)
            .where(WebhookSubscription.id.in_({r.recipient_id for r in rows}))
        ).all()
    }
    out, dead = [], []
    for row in rows:
        sub = subs.get(row.recipient_id)
        if sub is None or not sub.active or "id" not in row.params:
            dead.append(row.id)
            continue
        body = body_bytes(row.params["payload"])
        out.append(
            Delivery(row.id, sub.id, sub.url, sub.secret, row.params["id"], body, row.attempts + 1)
        )
    if dead:
        session.execute(
            update(_outbox)
            .where(_outbox.c.id.in_(dead))
            .values(status="failed", last_error="subscription_disabled")
        )
    return out


def outcome(result: Result) -> str:
    """Classify a try: "sent", "failed" (for good), "gone" (410: stop the subscription), "retry"."""
    code = result.status_code
    if code is not None and 200 <= code < 300:
        return "sent"
    if code == 410:
        return "gone"
    if code is not None and (300 <= code < 400 or (400 <= code < 500 and code not in (408, 429))):
        return "failed"
    if result.error == "target_refused":
        return "failed"
    return "retry"


def retry_delay(settings: Settings, attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: base·2^(attempt-1), plus up to a quarter of it as jitter."""
    delay = settings.webhook_retry_base_seconds * 2 ** max(0, attempt - 1)
    delay *= 1 + random.random() / 4  # spreads retries; not a secret
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, RETRY_CAP_SECONDS)


def record_result(
    session: Session,
    settings: Settings,
    delivery: Delivery,
    result: Result,
    *,
    now: dt.datetime,
) -> str:
    """Log the try and move the row on; a row already sent stays sent. Return the outcome."""
    session.add(
        WebhookAttempt(
            outbox_id=delivery.outbox_id,
            subscription_id=delivery.subscription_id,
            at=now,
            attempt=delivery.attempt,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            error=result.error,
        )
    )
    kind = outcome(result)
    if kind == "retry" and delivery.attempt >= settings.webhook_max_attempts:
        kind = "failed"
    detail = result.error or (None if kind == "sent" else f"http_{result.status_code}")
    if kind == "sent":
        values = {"status": "sent", "sent_at": now, "last_error": None}
    elif kind == "retry":
        delay = retry_delay(settings, delivery.attempt, result.retry_after)
        values = {"next_attempt_at": now + dt.timedelta(seconds=delay), "last_error": detail}
    else:
        values = {"status": "failed", "last_error": detail}
    session.execute(
        update(_outbox)
        .where(_outbox.c.id == delivery.outbox_id, _outbox.c.status == "pending")
        .values(**values)
    )
    if kind == "gone":
        session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == delivery.subscription_id)
            .values(active=False)
        )
    log.info("webhook row %d try %d: %s", delivery.outbox_id, delivery.attempt, detail or kind)
    return kind


# --- the HTTP side ---------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), RETRY_CAP_SECONDS) if value else None
    except ValueError:
        return None


# Why an attempt went nowhere, for the log (the row and the admin page keep the code).
_NOT_SENT = {
    "target_refused": "the URL is not one a webhook may be sent to",
    "target_unresolved": "its host name resolves to no address",
    "target_private": "its host name resolves to a non-public address",
}


def _connection(
    target: Target, settings: Settings, tls_context: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    """A connection to the target's host that goes only to the addresses checked for it."""
    timeout = settings.webhook_timeout_seconds
    if target.scheme == "https":
        return PinnedHTTPSConnection(
            target.host, target.port, target.addresses, timeout=timeout, context=tls_context
        )
    return PinnedHTTPConnection(target.host, target.port, target.addresses, timeout=timeout)


def post(
    delivery: Delivery,
    settings: Settings,
    *,
    timestamp: int,
    tls_context: ssl.SSLContext | None = None,
) -> Result:
    """POST one delivery, signed, to the addresses checked for this try; never raises.

    The host is resolved once here and every address checked (`pin_target`); the
    connection then goes to one of those addresses, never to a second look-up's answer.
    `tls_context` replaces the system trust store (tests with their own CA).
    """
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = pin_target(delivery.url, settings)
    except InvalidWebhook as exc:
        reason = exc.reason if isinstance(exc, TargetNotPinned) else "target_refused"
        log.warning("webhook row %d not sent: %s", delivery.outbox_id, _NOT_SENT[reason])
        return Result(None, took(), reason)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Tipline-Webhooks/1",
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(delivery.secret, delivery.webhook_id, timestamp, delivery.body),
    }
    conn = _connection(target, settings, tls_context)
    try:
        # http.client follows no redirects: a 3xx is an answer, never a second request.
        conn.request("POST", target.path, body=delivery.body, headers=headers)
        with conn.getresponse() as response:
            response.read(64 * 1024)  # let the receiver finish; its body is not kept
            if 200 <= response.status < 300:
                return Result(response.status, took())
            retry_after = _retry_after(response.headers.get("Retry-After"))
            return Result(response.status, took(), f"http_{response.status}", retry_after)
    except TimeoutError:
        return Result(None, took(), "timeout")
    # Refused, reset, bad certificate, malformed status line …: whatever the network does.
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return Result(None, took(), f"connection_error:{type(exc).__name__}")
    finally:
        conn.close()


def host_of(url: str) -> str:
    """The host of a URL, for the admin page (never the path or query)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


# --- the loop --------------------------------------------------------------------------------


def lease_seconds(settings: Settings, batch: int) -> float:
    """How long a claim holds its rows: every POST of the batch timing out, and a margin."""
    rounds = math.ceil(batch / PARALLEL)
    return settings.webhook_timeout_seconds * 2 * rounds + 30


def deliver_due(
    sessions: sessionmaker,
    settings: Settings,
    *,
    read_sessions: sessionmaker | None = None,
    now: dt.datetime | None = None,
    limit: int = 20,
    send: Callable[..., Result] = post,
) -> dict[str, int]:
    """Deliver one batch of due webhook rows; return how many came to each outcome."""
    now = now or utcnow()
    with (read_sessions or sessions)() as session:  # a read first: no write lock when idle
        if not any_due(session, KINDS, now=now):
            return {}
    with unit_of_work(sessions) as session:
        batch = claim_deliveries(
            session, now=now, lease_seconds=lease_seconds(settings, limit), limit=limit
        )
    if not batch:
        return {}
    timestamp = int(now.timestamp())
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(batch))) as pool:
        results = list(pool.map(lambda d: send(d, settings, timestamp=timestamp), batch))
    counts: dict[str, int] = {}
    with unit_of_work(sessions) as session:
        for delivery, result in zip(batch, results, strict=True):
            kind = record_result(session, settings, delivery, result, now=now)
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def run_deliveries(
    sessions: sessionmaker,
    settings: Settings,
    *,
    every: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    limit: int = 20,
) -> dict[str, int]:
    """Deliver everything due (batch after batch); with `every`, keep doing so until stopped."""
    total: dict[str, int] = {}
    while True:
        for _ in range(1000):  # bounded: a pass ends even if rows keep arriving
            counts = deliver_due(sessions, settings, limit=limit)
            for kind, n in counts.items():
                total[kind] = total.get(kind, 0) + n
            if sum(counts.values()) < limit:
                break
        if every is None or should_stop():
            return total
        time.sleep(every)
        if should_stop():
            return total
