"""The response clock: due times from the response targets, and escalation of unacknowledged tips.

Escalation ladder (all state lives in the tip row, so a restarted or second
runner carries on where the last one stopped):

    intake      the grid's grid workers are told (app.reports.services.submit_tip)
    level 1     ack target missed: the town supervisors (supervisors scoped to the
                2nd code of grid_path)
    level 2+    another ack period later: the city supervisors, then again every
                ack period until someone acknowledges
    at night    (22:00-06:00 China time) every step also goes to the staff of the
                grid's police service station (StaffUser.station == Grid.station)

A tip without a grid goes straight to the city supervisors. A step with nobody
to tell falls through to the next tier, and finally to the admins, so an
escalation never disappears into an empty role.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, true
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db import insert_unless_exists, utcnow
from app.grids.models import Grid, GridLayer
from app.outbox.models import OutboxMessage
from app.people.models import StaffScope, StaffUser
from app.refcache import Refreshed
from app.reports.models import PRIORITIES, ResponseTarget, Tip, TipEvent

# Minutes to acknowledge and to resolve per priority: the seed, and the fallback when
# no response target row matches (a database that was never seeded still has a clock).
DEFAULT_TARGETS: dict[str, tuple[int, int]] = {
    "urgent": (5, 120),
    "high": (10, 720),
    "normal": (30, 2880),
    "low": (120, 10080),
}
# The reference city's target in its centre: 3 minutes, down from 5.
CENTRE_URGENT_ACK_MINUTES = 3
# China has had no daylight saving time since 1991, so a fixed offset is exact and needs
# no tz database on the host.
LOCAL_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
NIGHT_STARTS, NIGHT_ENDS = dt.time(22, 0), dt.time(6, 0)
MIN_PERIOD = dt.timedelta(minutes=1)  # never re-notify faster than this, whatever the data says
BATCH = 200

_targets_table = ResponseTarget.__table__
_targets = Refreshed(
    lambda conn: {
        (r.priority, r.category_code, r.area_code): (r.ack_minutes, r.resolve_minutes)
        for r in conn.execute(
            select(
                _targets_table.c.priority,
                _targets_table.c.category_code,
                _targets_table.c.area_code,
                _targets_table.c.ack_minutes,
                _targets_table.c.resolve_minutes,
            )
        )
    }
)
_outbox = OutboxMessage.__table__


# --- targets ----------------------------------------------------------------------------


def pick_target(
    targets: dict, priority: str, category_code: str | None, area_codes: list[str]
) -> tuple[int, int]:
    """Return (ack, resolve) minutes of the most specific matching target.

    category+area > area > category > priority only; among areas the deepest
    code (grid, then village, town, city) wins. `area_codes` is city first.
    """
    deepest_first = list(reversed(area_codes))
    candidates = [(category_code, a) for a in deepest_first]
    candidates += [(None, a) for a in deepest_first]
    candidates += [(category_code, None), (None, None)]
    for category, area in candidates:
        found = targets.get((priority, category, area))
        if found is not None:
            return found
    return DEFAULT_TARGETS.get(priority, DEFAULT_TARGETS["normal"])


def due_times(
    conn: Connection | Session,
    *,
    priority: str,
    category_code: str | None,
    grid_path: str | None,
    received_at: dt.datetime,
) -> tuple[dt.datetime, dt.datetime]:
    """Return (ack_due_at, resolve_due_at) for a tip, from the per-process target cache."""
    codes = grid_path.split("/") if grid_path else []
    ack, resolve = pick_target(_targets.get(conn), priority, category_code, codes)
    return received_at + dt.timedelta(minutes=ack), received_at + dt.timedelta(minutes=resolve)


def start_clock(
    conn: Connection | Session,
    *,
    priority: str,
    category_code: str | None,
    grid_path: str | None,
    received_at: dt.datetime,
) -> dict:
    """Return the clock columns of a new tip: due times, and the first escalation at ack_due."""
    ack_due, resolve_due = due_times(
        conn,
        priority=priority,
        category_code=category_code,
        grid_path=grid_path,
        received_at=received_at,
    )
    return {"ack_due_at": ack_due, "resolve_due_at": resolve_due, "next_escalation_at": ack_due}


def restart_clock(session: Session, tip: Tip) -> None:
    """Recompute a tip's due times after its priority, category or place changed."""
    values = start_clock(
        session.connection(),
        priority=tip.priority,
        category_code=tip.category.code,
        grid_path=tip.grid_path,
        received_at=tip.received_at,
    )
    tip.ack_due_at, tip.resolve_due_at = values["ack_due_at"], values["resolve_due_at"]
    if tip.acknowledged_at is None and tip.is_open and tip.escalation_level == 0:
        tip.next_escalation_at = values["ack_due_at"]


def set_response_target(
    session: Session,
    priority: str,
    *,
    ack_minutes: int,
    resolve_minutes: int,
    category_code: str | None = None,
    area_code: str | None = None,
) -> ResponseTarget:
    """Create or change one response target (new tips use it; open tips keep their times)."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    if ack_minutes <= 0 or resolve_minutes < ack_minutes:
        raise ValueError("need 0 < ack_minutes <= resolve_minutes")
    row = session.scalar(
        select(ResponseTarget).where(
            ResponseTarget.priority == priority,
            _is(ResponseTarget.category_code, category_code),
            _is(ResponseTarget.area_code, area_code),
        )
    )
    if row is None:
        row = ResponseTarget(priority=priority, category_code=category_code, area_code=area_code)
        session.add(row)
    row.ack_minutes, row.resolve_minutes = ack_minutes, resolve_minutes
    session.flush()
    _targets.clear()
    return row


def _is(column, value):
    """Compare with NULL the SQL way when the value is None."""
    return column.is_(None) if value is None else column == value


def seed_response_targets(session: Session, *, centre_town_code: str | None = None) -> int:
    """Insert the default targets that are missing (edited ones are left alone)."""
    wanted = [(p, None, None, ack, res) for p, (ack, res) in DEFAULT_TARGETS.items()]
    if centre_town_code:
        wanted.append(
            (
                "urgent",
                None,
                centre_town_code,
                CENTRE_URGENT_ACK_MINUTES,
                DEFAULT_TARGETS["urgent"][1],
            )
        )
    have = {
        tuple(r)
        for r in session.execute(
            select(ResponseTarget.priority, ResponseTarget.category_code, ResponseTarget.area_code)
        )
    }
    added = 0
    for priority, category, area, ack, res in wanted:
        if (priority, category, area) not in have:
            session.add(
                ResponseTarget(
                    priority=priority,
                    category_code=category,
                    area_code=area,
                    ack_minutes=ack,
                    resolve_minutes=res,
                )
            )
            added += 1
    session.flush()
    _targets.clear()
    return added


# --- escalation -------------------------------------------------------------------------


def is_night(now: dt.datetime) -> bool:
    """Return whether it is night in the city (22:00-06:00 China time)."""
    local = now.astimezone(LOCAL_TZ).time()
    return local >= NIGHT_STARTS or local < NIGHT_ENDS


def ack_period(tip: Tip) -> dt.timedelta:
    """Return the tip's own time to acknowledge (stored in the row, so restarts agree)."""
    if tip.ack_due_at is None:
        return dt.timedelta(minutes=pick_target({}, tip.priority, None, [])[0])
    return max(tip.ack_due_at - tip.received_at, MIN_PERIOD)


def city_codes(session: Session) -> list[str]:
    """Return the city-level codes of the active layer (for tips that have no grid)."""
    return list(
        session.scalars(
            select(Grid.code)
            .join(GridLayer, GridLayer.id == Grid.layer_id)
            .where(GridLayer.active == true(), Grid.level == "city")
        )
    )


def _supervisors(session: Session, codes: list[str]) -> list[int]:
    """Return active supervisors scoped to any of these codes."""
    if not codes:
        return []
    return list(
        session.scalars(
            select(StaffUser.id)
            .join(StaffScope, StaffScope.staff_id == StaffUser.id)
            .where(
                StaffScope.grid_code.in_(codes),
                StaffUser.role == "supervisor",
                StaffUser.active.is_(True),
            )
            .distinct()
        )
    )


def _station_staff(session: Session, grid_id: int | None) -> list[int]:
    """Return active staff of the police service station that covers the grid."""
    if grid_id is None:
        return []
    station = session.scalar(select(Grid.station).where(Grid.id == grid_id))
    if not station:
        return []
    return list(
        session.scalars(
            select(StaffUser.id).where(StaffUser.station == station, StaffUser.active.is_(True))
        )
    )


def escalation_recipients(session: Session, tip: Tip, level: int, *, night: bool) -> list[int]:
    """Return the staff ids to tell at this escalation level, in a stable order."""
    codes = tip.grid_path.split("/") if tip.grid_path else []
    tiers: list[list[str]] = []
    if level == 1 and len(codes) >= 2:
        tiers.append([codes[1]])  # the town
    tiers.append(codes[:1] or city_codes(session))  # the city
    ids: list[int] = []
    for tier in tiers:
        ids = _supervisors(session, tier)
        if ids:
            break
    if not ids:
        ids = list(
            session.scalars(
                select(StaffUser.id).where(StaffUser.role == "admin", StaffUser.active.is_(True))
            )
        )
    if night:
        ids += _station_staff(session, tip.grid_id)
    return sorted(set(ids))


def _escalate(session: Session, tip: Tip, now: dt.datetime, night: bool, seen: dict) -> None:
    """Take one step up the ladder: outbox rows, an audit event, the next time to look."""
    level = tip.escalation_level + 1
    # Tips of one grid at the same rung have the same recipients: ask once per run.
    rung = (tip.grid_path, tip.grid_id, min(level, 2))
    if rung not in seen:
        seen[rung] = escalation_recipients(session, tip, level, night=night)
    recipients = seen[rung]
    overdue = now - (tip.ack_due_at or tip.received_at)
    params = {
        "ref": tip.ref,
        "level": level,
        "priority": tip.priority,
        "minutes_overdue": max(int(overdue.total_seconds() // 60), 0),
    }
    conn = session.connection()
    for staff_id in recipients:
        # The dedupe key makes a re-run of the same step (after a crash) add nothing.
        insert_unless_exists(
            conn,
            _outbox,
            dict(
                recipient_kind="staff",
                recipient_id=staff_id,
                tip_id=tip.id,
                template="staff_escalation",
                params=params,
                dedupe_key=f"esc:{tip.id}:{level}:{staff_id}",
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            ),
        )
    session.add(
        TipEvent(
            tip_id=tip.id,
            at=now,
            actor_kind="system",
            action="escalated",
            from_status=tip.status,
            to_status=tip.status,
            data={"level": level, "recipients": len(recipients), "night": night},
        )
    )
    tip.escalation_level = level
    tip.next_escalation_at = now + ack_period(tip)
    tip.updated_at = now


def run_clock(session: Session, *, now: dt.datetime | None = None, limit: int = BATCH) -> int:
    """Escalate every open, unacknowledged tip whose next escalation is due; return how many.

    Rows are locked with FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent
    runners split the work instead of repeating it; SQLite's BEGIN IMMEDIATE
    serialises runners. The caller commits (one unit of work per run).
    """
    now = now or utcnow()
    tips = session.scalars(
        select(Tip)
        .where(
            Tip.next_escalation_at <= now,
            Tip.is_open.is_(True),
            Tip.status == "new",
            Tip.acknowledged_at.is_(None),
        )
        .order_by(Tip.next_escalation_at, Tip.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    night, seen = is_night(now), {}
    for tip in tips:
        _escalate(session, tip, now, night, seen)
    session.flush()
    return len(tips)


# --- display ----------------------------------------------------------------------------


def _left(due: dt.datetime | None, done: dt.datetime | None, now: dt.datetime):
    """Return (seconds left or None, overdue, met or None) for one target."""
    if due is None:
        return None, False, None
    if done is not None:
        return None, False, done <= due
    left = int((due - now).total_seconds())
    return left, left < 0, None


def clock_status(tip: Tip, now: dt.datetime | None = None) -> dict:
    """Return the clock of a tip for the queue: seconds left (negative = overdue) and met."""
    now = now or utcnow()
    ack_left, ack_overdue, ack_met = _left(tip.ack_due_at, tip.acknowledged_at, now)
    closed = tip.resolved_at if not tip.is_open else None
    res_left, res_overdue, res_met = _left(tip.resolve_due_at, closed, now)
    return {
        "ack_due_at": tip.ack_due_at.isoformat() if tip.ack_due_at else None,
        "ack_seconds_left": ack_left,
        "ack_overdue": ack_overdue,
        "ack_met": ack_met,
        "resolve_due_at": tip.resolve_due_at.isoformat() if tip.resolve_due_at else None,
        "resolve_seconds_left": res_left,
        "resolve_overdue": res_overdue,
        "resolve_met": res_met,
        "escalation_level": tip.escalation_level,
    }
