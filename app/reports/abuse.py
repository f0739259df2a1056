"""Abuse controls on intake: submission rate limits, and bans that bite on the next request.

The documented limits (Settings, checked before any photo is decoded):

- a reporter (any channel, any of their tokens): `tips_per_minute` = 10 tips a minute
  and `tips_per_hour` = 60 an hour;
- an anonymous caller, per client key (a keyed hash of the address, made by the
  adapter; the address itself is never stored or logged): `anonymous_tips_per_minute`
  = 20 and `anonymous_tips_per_hour` = 120 (an address may be a carrier's shared NAT).

Past a limit the caller gets 429 `rate_limited` with `Retry-After`. The counters live in
the limiter the caller passes in: Redis when REDIS_URL is set, so every worker and the
bot share them. A reporter whose status is `banned` or `suspended` is refused with 403
on every channel; the status is read from the database on each submission, never cached.
"""

from __future__ import annotations

import ipaddress
import logging

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import DomainError, NotFound
from app.i18n import t
from app.people.models import AuditEntry, Reporter
from app.ratelimit import Decision, RateLimiter
from app.reports.errors import RateLimited, ReporterBlocked
from app.security import keyed_hash

log = logging.getLogger("tipline.abuse")

BLOCKED_STATUSES = frozenset({"banned", "suspended"})
_reporters = Reporter.__table__
_STATUS = select(_reporters.c.status).where(_reporters.c.id == bindparam("reporter_id"))


def client_key_for(secret: str, remote_addr: str | None) -> str | None:
    """Key an anonymous caller by a keyed hash of its address; None for loopback or unknown.

    A loopback peer is a local tool or a same-host proxy that did not pass the client's
    address on: limiting it would make every anonymous reporter share one counter.
    """
    if not remote_addr:
        return None
    try:
        if ipaddress.ip_address(remote_addr).is_loopback:
            return None
    except ValueError:
        pass
    return keyed_hash(secret, "client", remote_addr)


def check_reporter_allowed(conn: Connection, reporter_id: int | None) -> None:
    """Refuse a banned or suspended reporter, reading the status afresh every time."""
    if reporter_id is None:
        return
    status = conn.execute(_STATUS, {"reporter_id": reporter_id}).scalar()
    if status in BLOCKED_STATUSES:
        # One message for both: the reporter is not told which, or why.
        raise ReporterBlocked(
            t("abuse.reporter_blocked", "en"),
            code="reporter_banned" if status == "banned" else "reporter_suspended",
        )


def _limits(settings: Settings, reporter_id: int | None) -> tuple[int, int]:
    if reporter_id is not None:
        return settings.tips_per_minute, settings.tips_per_hour
    return settings.anonymous_tips_per_minute, settings.anonymous_tips_per_hour


def count_against(
    limiter: RateLimiter, windows: list[tuple[str, int, float]], *, record: bool = True
) -> Decision | None:
    """Count one event against each (key, limit, seconds) window in turn; the first refusal.

    Stops at the first window that refuses, so a refused event is not recorded in the
    longer ones. With record=False it only looks. None when the limiter is unavailable:
    callers let the event through (fail open: a tip must not be lost to an outage).
    """
    check = limiter.hit if record else limiter.peek
    try:
        decision = None
        for key, limit, seconds in windows:
            decision = check(key, limit, seconds)
            if not decision.allowed:
                break
    except Exception:
        log.warning("rate limiter unavailable; accepted without a limit check")
        return None
    return decision


def check_submission_rate(
    limiter: RateLimiter | None,
    settings: Settings,
    *,
    reporter_id: int | None,
    client_key: str | None,
    record: bool = True,
) -> None:
    """Count one submission against the reporter (or anonymous client); raise when over.

    With record=False it only looks (for a request that may turn out to be a replay,
    which must not count twice). The minute window is counted first: a refused event
    is not recorded, so a burst spends the minute's allowance of the hour, not all of it.
    """
    if limiter is None:
        return
    if reporter_id is not None:
        key = f"tips:reporter:{reporter_id}"
    elif client_key:
        key = f"tips:client:{client_key}"
    else:
        return  # staff entering a tip for a caller, a local tool: nobody to count
    per_minute, per_hour = _limits(settings, reporter_id)
    windows = [(key + ":m", per_minute, 60), (key + ":h", per_hour, 3600)]
    decision = count_against(limiter, windows, record=record)
    if decision is not None and not decision.allowed:
        params = {
            "per_minute": per_minute,
            "per_hour": per_hour,
            "retry_after": decision.retry_after,
        }
        exc = RateLimited(t("abuse.rate_limited", "en", **params), retry_after=decision.retry_after)
        exc.params = params  # the bot renders the same message in the reporter's language
        raise exc


# --- staff actions on reporters ---------------------------------------------------------------


def _set_status(
    session: Session,
    reporter_id: int,
    status: str,
    *,
    actor_id: int | None,
    action: str,
    reason: str | None,
    reason_required: bool,
) -> Reporter:
    """Change a reporter's status and write the audit entry, in the caller's transaction."""
    reason = (reason or "").strip() or None
    if reason_required and reason is None:
        raise DomainError(
            "a reason is required", fields={"reason": ["required"]}, code="reason_required"
        )
    reporter = session.get(Reporter, reporter_id, with_for_update=True)
    if reporter is None:
        raise NotFound("no such reporter")
    previous = reporter.status
    reporter.status = status
    session.add(
        AuditEntry(
            staff_id=actor_id,
            action=action,
            target_kind="reporter",
            target_id=reporter_id,
            reason=reason,
            data={"from": previous, "to": status},
        )
    )
    session.flush()
    return reporter


def ban_reporter(
    session: Session, reporter_id: int, *, actor_id: int | None, reason: str
) -> Reporter:
    """Ban a reporter: every channel refuses their next tip (403), until unbanned."""
    return _set_status(
        session,
        reporter_id,
        "banned",
        actor_id=actor_id,
        action="reporter_ban",
        reason=reason,
        reason_required=True,
    )


def suspend_reporter(
    session: Session, reporter_id: int, *, actor_id: int | None, reason: str
) -> Reporter:
    """Suspend a reporter: refused like a ban, meant to be lifted after a review."""
    return _set_status(
        session,
        reporter_id,
        "suspended",
        actor_id=actor_id,
        action="reporter_suspend",
        reason=reason,
        reason_required=True,
    )


def unban_reporter(
    session: Session, reporter_id: int, *, actor_id: int | None, reason: str | None = None
) -> Reporter:
    """Make a banned or suspended reporter active again."""
    return _set_status(
        session,
        reporter_id,
        "active",
        actor_id=actor_id,
        action="reporter_unban",
        reason=reason,
        reason_required=False,
    )
