"""What the partners admin page reads and does: keys and subscriptions (audited), the log."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import NotFound
from app.outbox.models import OutboxMessage
from app.partners.delivery import host_of
from app.partners.keys import create_partner, list_partners, revoke_partner
from app.partners.models import Partner, PartnerRequest, WebhookAttempt, WebhookSubscription
from app.partners.webhooks import (
    SubscriptionNotFound,
    add_subscription,
    disable_subscription,
    list_subscriptions,
)
from app.people.models import AuditEntry, Organisation

LOG_SIZE = 100


def _audit(session: Session, staff_id: int, action: str, kind: str, target: int, **data) -> None:
    session.add(
        AuditEntry(staff_id=staff_id, action=action, target_kind=kind, target_id=target, data=data)
    )


def _row(partner: Partner, orgs: dict[int, str], requests: dict[int, int]) -> dict:
    return {
        "id": partner.id,
        "name": partner.name,
        "key_prefix": partner.key_prefix,
        "organisation": orgs.get(partner.organisation_id),
        "grid_paths": list(partner.grid_paths or []),
        "created_at": partner.created_at,
        "revoked_at": partner.revoked_at,
        "last_used_at": partner.last_used_at,
        "requests": requests.get(partner.id, 0),
    }


def partner_overview(session: Session) -> list[dict]:
    """Return every partner with its organisation's name and how many requests it filed."""
    partners = list_partners(session)
    org_ids = {p.organisation_id for p in partners if p.organisation_id}
    orgs = dict(
        session.execute(
            select(Organisation.id, Organisation.name).where(Organisation.id.in_(org_ids))
        ).all()
    )
    requests = dict(
        session.execute(
            select(PartnerRequest.partner_id, func.count()).group_by(PartnerRequest.partner_id)
        ).all()
    )
    return [_row(p, orgs, requests) for p in partners]


def partner_detail(session: Session, partner_id: int) -> dict:
    """Return one partner, its subscriptions (no secrets) and its recent delivery log."""
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise NotFound("no such partner")
    org = session.get(Organisation, partner.organisation_id) if partner.organisation_id else None
    count = session.scalar(
        select(func.count())
        .select_from(PartnerRequest)
        .where(PartnerRequest.partner_id == partner_id)
    )
    row = _row(partner, {org.id: org.name} if org else {}, {partner_id: count})
    row["subscriptions"] = list_subscriptions(session, partner_id)
    row["log"] = delivery_log(session, partner_id)
    return row


def delivery_log(session: Session, partner_id: int, *, limit: int = LOG_SIZE) -> list[dict]:
    """Return the partner's latest delivery attempts, newest first: event, time, status, timing."""
    rows = session.execute(
        select(WebhookAttempt, OutboxMessage.params, OutboxMessage.status, WebhookSubscription.url)
        .join(OutboxMessage, OutboxMessage.id == WebhookAttempt.outbox_id)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookAttempt.subscription_id)
        .where(WebhookSubscription.partner_id == partner_id)
        .order_by(WebhookAttempt.at.desc(), WebhookAttempt.id.desc())
        .limit(limit)
    ).all()
    log = []
    for attempt, params, delivery_status, url in rows:
        payload = (params or {}).get("payload", {})
        log.append(
            {
                "at": attempt.at,
                "subscription_id": attempt.subscription_id,
                "host": host_of(url),
                "event": payload.get("type"),
                "request": (payload.get("data") or {}).get("service_request_id"),
                "webhook_id": (params or {}).get("id"),
                "attempt": attempt.attempt,
                "status_code": attempt.status_code,
                "duration_ms": attempt.duration_ms,
                "error": attempt.error,
                "delivery_status": delivery_status,
            }
        )
    return log


def create_partner_as(
    session: Session,
    settings: Settings,
    staff_id: int,
    *,
    name: str,
    organisation: str | None,
    grid_paths: list[str] | None,
) -> tuple[Partner, str]:
    """Make a partner key for an admin and audit it; return the partner and the key (once)."""
    partner, raw = create_partner(
        session,
        settings,
        name=name,
        organisation=organisation,
        grid_paths=grid_paths,
        created_by_id=staff_id,
    )
    _audit(
        session, staff_id, "partner_create", "partner", partner.id, key_prefix=partner.key_prefix
    )
    return partner, raw


def revoke_partner_as(session: Session, staff_id: int, partner_id: int) -> bool:
    """Revoke a partner's key for an admin and audit it; False when it was revoked already."""
    if session.get(Partner, partner_id) is None:
        raise NotFound("no such partner")
    revoked = revoke_partner(session, partner_id)
    if revoked:
        _audit(session, staff_id, "partner_revoke", "partner", partner_id)
    return revoked


def subscribe_as(
    session: Session,
    settings: Settings,
    staff_id: int,
    partner_id: int,
    url: str,
    events: list[str] | None,
) -> tuple[WebhookSubscription, str]:
    """Add a subscription for an admin and audit it (the host only); return it and its secret."""
    sub, secret = add_subscription(session, settings, partner_id, url, events)
    _audit(
        session,
        staff_id,
        "webhook_add",
        "partner_webhook",
        sub.id,
        partner_id=partner_id,
        host=host_of(sub.url),
        events=list(sub.events),
    )
    return sub, secret


def unsubscribe_as(session: Session, staff_id: int, partner_id: int, subscription_id: int) -> bool:
    """Disable one of the partner's subscriptions for an admin and audit it."""
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None or sub.partner_id != partner_id:
        raise SubscriptionNotFound("no such subscription")
    changed = disable_subscription(session, subscription_id)
    if changed:
        _audit(
            session,
            staff_id,
            "webhook_disable",
            "partner_webhook",
            subscription_id,
            partner_id=partner_id,
        )
    return changed
