"""Bring the points ledger in line with a tip's outcome; second approvals; rule editing.

Every write here follows one order of locks — the tip row, then the reporter's
balance row — so concurrent approvers queue instead of deadlocking, and every
entry is an INSERT ... ON CONFLICT DO NOTHING on the ledger's unique key, so a
double click, a retry or a racing approver can never write an entry twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db import insert_unless_exists, utcnow
from app.people.models import AuditEntry, Reporter
from app.reports.errors import TipNotFound
from app.reports.models import Incident, Tip
from app.rewards.errors import (
    InvalidRuleChange,
    RequestNotFound,
    RequestSettled,
    SecondApproverRequired,
)
from app.rewards.models import PointBalance, PointEntry, PointRequest, RewardRule, RewardSetting
from app.rewards.notices import queue_points_digest
from app.rewards.rules import (
    RULE_DEFAULTS,
    RULE_POINTS_LIMIT,
    SETTING_DEFAULTS,
    SETTING_LIMITS,
    TipState,
    credit_under_cap,
    month_of,
    needs_second_approval,
    rules_that_apply,
)

_entries = PointEntry.__table__
_balances = PointBalance.__table__
_requests = PointRequest.__table__
_rules = RewardRule.__table__
_settings = RewardSetting.__table__


@dataclass(frozen=True)
class _Owner:
    """Whose points they are and what they are for, copied onto each entry."""

    reporter_id: int
    organisation_id: int | None
    tip_id: int | None
    tip_ref: str | None
    grid_path: str | None


# --- rules and settings -------------------------------------------------------------------
def current_rules(conn: Connection) -> dict[str, tuple[int, bool]]:
    """Return {code: (points, active)}: the stored values over the defaults."""
    rules = {code: (points, True) for code, points in RULE_DEFAULTS.items()}
    for code, points, active in conn.execute(
        select(_rules.c.code, _rules.c.points, _rules.c.active)
    ):
        rules[code] = (points, active)
    return rules


def current_settings(conn: Connection) -> dict[str, int]:
    """Return the cap, threshold, nominee count and digest hour: stored values over defaults."""
    values = dict(SETTING_DEFAULTS)
    values.update(dict(conn.execute(select(_settings.c.key, _settings.c.value)).all()))
    return values


def list_rules(session: Session) -> list[dict]:
    """Return the rules in their fixed order, for the admin page."""
    rules = current_rules(session.connection())
    return [
        {"code": code, "points": rules[code][0], "active": rules[code][1]} for code in RULE_DEFAULTS
    ]


def set_rule(
    session: Session,
    code: str,
    *,
    points: int,
    active: bool,
    actor_id: int,
    now: dt.datetime | None = None,
) -> None:
    """Change a rule's points (used from now on; earlier entries keep theirs), and audit it."""
    if code not in RULE_DEFAULTS:
        raise InvalidRuleChange("unknown rule", fields={"code": ["unknown rule"]})
    if not -RULE_POINTS_LIMIT <= points <= RULE_POINTS_LIMIT:
        raise InvalidRuleChange(
            "points out of range", fields={"points": [f"between ±{RULE_POINTS_LIMIT}"]}
        )
    now = now or utcnow()
    conn = session.connection()
    before = current_rules(conn)[code]
    values = {"points": points, "active": active, "updated_at": now, "updated_by_id": actor_id}
    if insert_unless_exists(conn, _rules, {"code": code, "sort_order": 0, **values}) is None:
        conn.execute(update(_rules).where(_rules.c.code == code).values(**values))
    session.add(
        AuditEntry(
            at=now,
            staff_id=actor_id,
            action="reward_rule_changed",
            target_kind="reward_rule",
            data={"code": code, "before": list(before), "after": [points, active]},
        )
    )


def set_setting(
    session: Session, key: str, value: int, *, actor_id: int, now: dt.datetime | None = None
) -> None:
    """Change the cap, the second-approval threshold, the nominee count or the digest hour."""
    if key not in SETTING_LIMITS:
        raise InvalidRuleChange("unknown setting", fields={"key": ["unknown setting"]})
    low, high = SETTING_LIMITS[key]
    if not low <= value <= high:
        raise InvalidRuleChange("value out of range", fields={key: [f"between {low} and {high}"]})
    now = now or utcnow()
    conn = session.connection()
    before = current_settings(conn)[key]
    values = {"value": value, "updated_at": now, "updated_by_id": actor_id}
    if insert_unless_exists(conn, _settings, {"key": key, **values}) is None:
        conn.execute(update(_settings).where(_settings.c.key == key).values(**values))
    session.add(
        AuditEntry(
            at=now,
            staff_id=actor_id,
            action="reward_setting_changed",
            target_kind="reward_setting",
            data={"key": key, "before": before, "after": value},
        )
    )


# --- the ledger ---------------------------------------------------------------------------
def _lock_balance(conn: Connection, reporter_id: int, now: dt.datetime) -> None:
    """Create the reporter's balance row if need be and hold its lock until the transaction ends."""
    insert_unless_exists(
        conn, _balances, {"reporter_id": reporter_id, "balance": 0, "updated_at": now}
    )
    conn.execute(
        select(_balances.c.id).where(_balances.c.reporter_id == reporter_id).with_for_update()
    )


def _bump_balance(conn: Connection, reporter_id: int, delta: int, now: dt.datetime) -> None:
    """Add to the cached total atomically, in the entry's own transaction."""
    conn.execute(
        update(_balances)
        .where(_balances.c.reporter_id == reporter_id)
        .values(balance=_balances.c.balance + delta, updated_at=now)
    )


def _earned(conn: Connection, reporter_id: int, period: str) -> int:
    """Return the positive points earned in a period, net of their reversals (for the cap)."""
    c = _entries.c
    earned = case(
        (and_(c.kind == "award", c.points > 0), c.points),
        (and_(c.kind == "reversal", c.points < 0), c.points),
        else_=0,
    )
    return conn.execute(
        select(func.coalesce(func.sum(earned), 0)).where(
            c.reporter_id == reporter_id, c.period == period
        )
    ).scalar_one()


def _write_award(
    conn: Connection,
    owner: _Owner,
    code: str,
    seq: int,
    rule_points: int,
    *,
    actor_id: int | None,
    approver_id: int | None,
    reason: str,
    detail: dict,
    limits: dict[str, int],
    now: dt.datetime,
) -> int | None:
    """Write the award (tip, rule, seq) once; return its id, or None if it was there already."""
    period = month_of(now)
    earned = _earned(conn, owner.reporter_id, period)
    credited = credit_under_cap(rule_points, earned, limits["period_cap"])
    detail = {**detail, "rule_points": rule_points}
    if credited != rule_points:
        reason, detail["cap"] = "capped", limits["period_cap"]
    entry_id = insert_unless_exists(
        conn,
        _entries,
        {
            "kind": "award",
            "reporter_id": owner.reporter_id,
            "organisation_id": owner.organisation_id,
            "tip_id": owner.tip_id,
            "tip_ref": owner.tip_ref,
            "grid_path": owner.grid_path,
            "rule_code": code,
            "seq": seq,
            "points": credited,
            "reason": reason,
            "detail": detail,
            "actor_id": actor_id,
            "approver_id": approver_id,
            "created_at": now,
            "period": period,
            "reverses_id": None,
        },
    )
    if entry_id is not None and credited:
        _bump_balance(conn, owner.reporter_id, credited, now)
        queue_points_digest(conn, owner.reporter_id, now=now, hour_utc=limits["digest_hour_utc"])
    return entry_id


def _write_reversal(
    conn: Connection,
    award,
    *,
    actor_id: int | None,
    detail: dict,
    limits: dict[str, int],
    now: dt.datetime,
) -> int | None:
    """Cancel an award with an opposite entry in the award's own period (so re-runs see it)."""
    entry_id = insert_unless_exists(
        conn,
        _entries,
        {
            "kind": "reversal",
            "reporter_id": award.reporter_id,
            "organisation_id": award.organisation_id,
            "tip_id": award.tip_id,
            "tip_ref": award.tip_ref,
            "grid_path": award.grid_path,
            "rule_code": award.rule_code,
            "seq": award.seq,
            "points": -award.points,
            "reason": "outcome_changed",
            "detail": detail,
            "actor_id": actor_id,
            "approver_id": None,
            "created_at": now,
            "period": award.period,
            "reverses_id": award.id,
        },
    )
    if entry_id is not None and award.points:
        _bump_balance(conn, award.reporter_id, -award.points, now)
        queue_points_digest(conn, award.reporter_id, now=now, hour_utc=limits["digest_hour_utc"])
    return entry_id


def _request_award(
    conn: Connection, owner: _Owner, code: str, seq: int, points: int, actor_id, now
) -> None:
    """Park an award above the threshold until a second approver decides (once per key)."""
    insert_unless_exists(
        conn,
        _requests,
        {
            "tip_id": owner.tip_id,
            "tip_ref": owner.tip_ref,
            "grid_path": owner.grid_path,
            "reporter_id": owner.reporter_id,
            "rule_code": code,
            "seq": seq,
            "points": points,
            "requested_by_id": actor_id,
            "requested_at": now,
            "state": "pending",
        },
    )


def apply_outcome(
    session: Session, tip_id: int, *, actor_id: int | None, now: dt.datetime | None = None
) -> list[int]:
    """Bring the ledger in line with the tip's current outcome; return the new entry ids.

    Rules that now apply and have no live award are awarded (or, above the
    threshold, requested); live awards whose rule no longer applies are reversed.
    Safe to call any number of times, concurrently, after every outcome transition.
    """
    now = now or utcnow()
    # session.execute (not the connection) so the caller's pending ORM changes are flushed.
    tip = session.execute(
        select(
            Tip.id,
            Tip.ref,
            Tip.reporter_id,
            Tip.status,
            Tip.outcome,
            Tip.priority,
            Tip.incident_id,
            Tip.grid_path,
        )
        .where(Tip.id == tip_id)
        .with_for_update()
    ).one_or_none()
    if tip is None:
        raise TipNotFound("no such tip")
    if tip.reporter_id is None:
        return []  # an anonymous tip has nobody to credit
    conn = session.connection()
    first_tip_id = (
        conn.execute(select(Incident.first_tip_id).where(Incident.id == tip.incident_id)).scalar()
        if tip.incident_id is not None
        else None
    )
    wanted = rules_that_apply(
        TipState(
            status=tip.status,
            outcome=tip.outcome,
            priority=tip.priority,
            in_incident=tip.incident_id is not None,
            first_of_incident=first_tip_id == tip.id,
        )
    )
    plan = _plan(
        wanted,
        conn.execute(select(_entries).where(_entries.c.tip_id == tip.id)).all(),
        conn.execute(select(_requests).where(_requests.c.tip_id == tip.id)).all(),
    )
    if not plan:
        return []  # the ledger is in line already: a double click or a retry ends here
    _lock_balance(conn, tip.reporter_id, now)
    organisation_id = conn.execute(
        select(Reporter.organisation_id).where(Reporter.id == tip.reporter_id)
    ).scalar_one()
    owner = _Owner(tip.reporter_id, organisation_id, tip.id, tip.ref, tip.grid_path)
    rules, limits = current_rules(conn), current_settings(conn)
    detail = {"outcome": tip.outcome, "status": tip.status}
    written: list[int] = []
    for step, code, seq, row in plan:
        entry_id = None
        if step == "award":
            points, active = rules[code]
            if not active:
                continue
            if needs_second_approval(points, limits["second_approval_above"]):
                _request_award(conn, owner, code, seq, points, actor_id, now)
                continue
            entry_id = _write_award(
                conn,
                owner,
                code,
                seq,
                points,
                actor_id=actor_id,
                approver_id=None,
                reason="rule_applies",
                detail=detail,
                limits=limits,
                now=now,
            )
        elif step == "reverse":
            entry_id = _write_reversal(
                conn, row, actor_id=actor_id, detail=detail, limits=limits, now=now
            )
        else:  # close a request whose rule stopped applying
            conn.execute(
                update(_requests)
                .where(_requests.c.id == row.id, _requests.c.closed_at.is_(None))
                .values(closed_at=now)
            )
        if entry_id is not None:
            written.append(entry_id)
    return written


def _plan(wanted: set[str], entries, requests) -> list[tuple[str, str, int, object]]:
    """Decide, per rule, what brings the tip's ledger in line: award, reverse or close.

    For each (tip, rule) only the latest generation matters: a live award stays or
    is reversed; a pending or rejected request stands until the rule stops applying
    (then it is closed); a reversed award or a closed request starts a new generation.
    """
    awards: dict[str, dict[int, object]] = {}
    reversed_ids = {e.reverses_id for e in entries if e.kind == "reversal"}
    for e in entries:
        if e.kind == "award":
            awards.setdefault(e.rule_code, {})[e.seq] = e
    asked: dict[str, dict[int, object]] = {}
    for r in requests:
        asked.setdefault(r.rule_code, {})[r.seq] = r
    plan = []
    for code in sorted(wanted | awards.keys() | asked.keys()):
        by_seq, by_seq_asked = awards.get(code, {}), asked.get(code, {})
        generation = max([*by_seq, *by_seq_asked], default=-1)
        award, request = by_seq.get(generation), by_seq_asked.get(generation)
        live = award is not None and award.id not in reversed_ids
        open_request = award is None and request is not None and request.closed_at is None
        if code in wanted:
            if not live and not open_request:
                plan.append(("award", code, generation + 1, None))
        elif live:
            plan.append(("reverse", code, generation, award))
        elif open_request:
            plan.append(("close", code, generation, request))
    return plan


# --- second approvals ---------------------------------------------------------------------
def pending_requests(session: Session, *, visible=None) -> list[PointRequest]:
    """Return the requests waiting for a second approver (filtered by a grid-path condition)."""
    query = select(PointRequest).where(
        PointRequest.state == "pending", PointRequest.closed_at.is_(None)
    )
    if visible is not None:
        query = query.where(visible)
    return list(session.scalars(query.order_by(PointRequest.requested_at, PointRequest.id)))


def decide_request(
    session: Session,
    request_id: int,
    *,
    approver_id: int,
    approve: bool,
    can_see=None,
    now: dt.datetime | None = None,
) -> int | None:
    """Approve (write the award) or reject a pending request; return the new entry id.

    `can_see(grid_path)` limits approvers to requests about tips they may see.
    """
    now = now or utcnow()
    found = session.execute(
        select(PointRequest.tip_id, PointRequest.reporter_id, PointRequest.grid_path).where(
            PointRequest.id == request_id
        )
    ).one_or_none()
    if found is None or (can_see is not None and not can_see(found.grid_path)):
        raise RequestNotFound("no such request")
    conn = session.connection()
    conn.execute(select(Tip.id).where(Tip.id == found.tip_id).with_for_update())
    _lock_balance(conn, found.reporter_id, now)
    request = conn.execute(select(_requests).where(_requests.c.id == request_id)).one()
    if request.state != "pending" or request.closed_at is not None:
        raise RequestSettled("this request is settled already")
    if request.requested_by_id == approver_id:
        raise SecondApproverRequired("a second person must approve this")
    entry_id = None
    if approve:
        organisation_id = conn.execute(
            select(Reporter.organisation_id).where(Reporter.id == request.reporter_id)
        ).scalar_one()
        owner = _Owner(
            request.reporter_id, organisation_id, request.tip_id, request.tip_ref, request.grid_path
        )
        entry_id = _write_award(
            conn,
            owner,
            request.rule_code,
            request.seq,
            request.points,
            actor_id=request.requested_by_id,
            approver_id=approver_id,
            reason="approved",
            detail={"request": request.id},
            limits=current_settings(conn),
            now=now,
        )
    conn.execute(
        update(_requests)
        .where(_requests.c.id == request_id)
        .values(
            state="approved" if approve else "rejected",
            decided_by_id=approver_id,
            decided_at=now,
            entry_id=entry_id,
        )
    )
    return entry_id


# --- checks -------------------------------------------------------------------------------
def balance_mismatches(session: Session) -> list[tuple[int, int, int]]:
    """Return (reporter, cached, ledger sum) wherever the cache and the ledger disagree."""
    sums = dict(
        session.execute(
            select(_entries.c.reporter_id, func.sum(_entries.c.points)).group_by(
                _entries.c.reporter_id
            )
        ).all()
    )
    cached = dict(session.execute(select(_balances.c.reporter_id, _balances.c.balance)).all())
    return [
        (reporter_id, cached.get(reporter_id, 0), sums.get(reporter_id, 0))
        for reporter_id in sorted(sums.keys() | cached.keys())
        if cached.get(reporter_id, 0) != sums.get(reporter_id, 0)
    ]
