"""Leaderboards from the ledger: by reporter, organisation or town; a reporter's own rank.

Every figure is a sum over ledger entries of the period's months, so a board
can always be recomputed and checked against the entries behind it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, and_, case, false, func, or_, select, true
from sqlalchemy.orm import Session

from app.db import utcnow
from app.grids.models import Grid
from app.people.models import Organisation, Reporter
from app.rewards.models import PointEntry
from app.rewards.rules import Period, current_period, parse_period, rank
from app.staff.scope import Viewer, path_prefix_condition

GROUPINGS = ("reporter", "organisation", "town")
_e = PointEntry


def confirmed_tips_column():
    """Count confirmed tips net of reversals (a reversed confirmation no longer counts)."""
    return func.coalesce(
        func.sum(
            case(
                (and_(_e.rule_code == "tip_confirmed", _e.kind == "award"), 1),
                (and_(_e.rule_code == "tip_confirmed", _e.kind == "reversal"), -1),
                else_=0,
            )
        ),
        0,
    )


def scope_condition(viewer: Viewer | None, column=None) -> ColumnElement[bool]:
    """Limit rows to tips a staff viewer may see (the triage queue's rule, on a grid-path column).

    `column` defaults to the ledger's grid path; pending requests pass their own.
    """
    if viewer is None or viewer.sees_all:
        return true()
    column = _e.grid_path if column is None else column
    parts = [path_prefix_condition(column, p) for p in viewer.paths]
    if viewer.sees_unrouted:
        parts.append(column.is_(None))
    return or_(*parts) if parts else false()


def _town_condition(session: Session, town: str) -> ColumnElement[bool]:
    """Entries of tips routed inside a town (in any layer version that has the code)."""
    paths = session.scalars(
        select(Grid.path).where(Grid.code == town, Grid.level == "town").distinct()
    ).all()
    return or_(*[path_prefix_condition(_e.grid_path, p) for p in paths]) if paths else false()


def _filters(
    session: Session,
    period: Period,
    *,
    role: str | None,
    organisation_id: int | None,
    town: str | None,
    viewer: Viewer | None,
) -> list[ColumnElement[bool]]:
    conditions = [_e.period.in_(period.months), scope_condition(viewer)]
    if role:
        conditions.append(Reporter.role == role)
    if organisation_id is not None:
        conditions.append(_e.organisation_id == organisation_id)
    if town:
        conditions.append(_town_condition(session, town))
    return conditions


def reporter_rows(session: Session, conditions) -> list[dict]:
    """Points and confirmed tips per reporter over the ledger entries matching conditions."""
    rows = session.execute(
        select(
            Reporter.id,
            Reporter.pseudonym,
            Reporter.role,
            Organisation.name,
            func.sum(_e.points),
            confirmed_tips_column(),
        )
        .join(Reporter, Reporter.id == _e.reporter_id)
        .outerjoin(Organisation, Organisation.id == Reporter.organisation_id)
        .where(*conditions)
        .group_by(Reporter.id, Reporter.pseudonym, Reporter.role, Organisation.name)
    ).all()
    return [
        {
            "id": rid,
            "name": pseudonym,
            "role": role,
            "organisation": org,
            "points": int(points),
            "confirmed_tips": int(confirmed),
        }
        for rid, pseudonym, role, org, points, confirmed in rows
    ]


def _organisation_rows(session: Session, conditions) -> list[dict]:
    rows = session.execute(
        select(
            Organisation.id,
            Organisation.name,
            Organisation.kind,
            func.sum(_e.points),
            confirmed_tips_column(),
            func.count(func.distinct(_e.reporter_id)),
        )
        .join(Organisation, Organisation.id == _e.organisation_id)
        .join(Reporter, Reporter.id == _e.reporter_id)
        .where(*conditions)
        .group_by(Organisation.id, Organisation.name, Organisation.kind)
    ).all()
    return [
        {
            "id": oid,
            "name": name,
            "kind": kind,
            "points": int(points),
            "confirmed_tips": int(confirmed),
            "members": int(members),
        }
        for oid, name, kind, points, confirmed, members in rows
    ]


def _town_rows(session: Session, conditions) -> list[dict]:
    rows = session.execute(
        select(_e.grid_path, func.sum(_e.points), confirmed_tips_column())
        .join(Reporter, Reporter.id == _e.reporter_id)
        .where(*conditions)
        .group_by(_e.grid_path)
    ).all()
    towns: dict[str, dict] = {}
    for path, points, confirmed in rows:
        parts = (path or "").split("/")
        code = parts[1] if len(parts) > 1 else None  # city/town/village/grid
        row = towns.setdefault(code, {"id": code, "points": 0, "confirmed_tips": 0})
        row["points"] += int(points)
        row["confirmed_tips"] += int(confirmed)
    names = dict(
        session.execute(
            select(Grid.code, Grid.name).where(
                Grid.level == "town", Grid.code.in_([c for c in towns if c])
            )
        ).all()
    )
    for code, row in towns.items():
        row["name"] = names.get(code, code) if code else None
    return list(towns.values())


def leaderboard(
    session: Session,
    period: str,
    *,
    by: str = "reporter",
    role: str | None = None,
    organisation_id: int | None = None,
    town: str | None = None,
    viewer: Viewer | None = None,
    limit: int = 200,
) -> dict:
    """Rank reporters, organisations or towns by points (then confirmed tips) in a period."""
    parsed = parse_period(period)
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}")
    conditions = _filters(
        session,
        parsed,
        role=role,
        organisation_id=organisation_id,
        town=town,
        viewer=viewer,
    )
    rows = {"reporter": reporter_rows, "organisation": _organisation_rows, "town": _town_rows}[by](
        session, conditions
    )
    ranked = rank(rows, key=lambda r: (-r["points"], -r["confirmed_tips"], r["name"] or ""))
    return {"period": parsed.label, "by": by, "rows": ranked[:limit], "total": len(ranked)}


def reporter_points(
    session: Session, reporter_id: int, *, period: str | None = None, now: dt.datetime | None = None
) -> dict:
    """Return a reporter's balance, their points in a period and their rank among their role.

    Only their own rank and the number of peers: never anyone else's figures.
    """
    parsed = parse_period(period or current_period(now or utcnow()))
    role = session.scalar(select(Reporter.role).where(Reporter.id == reporter_id))
    balance = session.scalar(
        select(func.coalesce(func.sum(_e.points), 0)).where(_e.reporter_id == reporter_id)
    )
    peers = select(Reporter.id).where(
        Reporter.role == role, or_(Reporter.status == "active", Reporter.id == reporter_id)
    )
    totals = (
        select(_e.reporter_id, func.sum(_e.points).label("total"))
        .where(_e.period.in_(parsed.months), _e.reporter_id.in_(peers))
        .group_by(_e.reporter_id)
        .subquery()
    )
    mine = session.scalar(
        select(func.coalesce(func.max(totals.c.total), 0)).where(
            totals.c.reporter_id == reporter_id
        )
    )
    above = session.scalar(select(func.count()).select_from(totals).where(totals.c.total > mine))
    rank_of = session.scalar(select(func.count()).select_from(peers.subquery()))
    if mine < 0:  # peers without entries have 0 points, which is more
        above += rank_of - session.scalar(select(func.count()).select_from(totals))
    return {
        "balance": int(balance),
        "period": parsed.label,
        "period_points": int(mine),
        "rank": int(above) + 1,
        "rank_of": int(rank_of),
    }
