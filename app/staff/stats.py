"""Dashboard numbers and the CSV export, counted over the tips the viewer may see only."""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace

from sqlalchemy import ColumnElement, Date, cast, func, literal_column, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import DomainError
from app.grids.models import Grid
from app.i18n import t
from app.people.models import Reporter
from app.reports.clock import LOCAL_TZ, due_times
from app.reports.models import PRIORITIES, STAFF_STATUSES, Category, Tip
from app.staff.queue import QueueFilters, filter_conditions
from app.staff.scope import Viewer

GROUPINGS = ("grid", "town", "category")
MAX_DAYS = 366
EXPORT_MAX_ROWS = 50_000
NO_GRID = "-"
# Spreadsheet programs run a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class StatsInvalid(DomainError):
    """A dashboard or export request that cannot be answered as asked."""

    code = "stats_invalid"


@dataclass(frozen=True, slots=True)
class Series:
    """Tips per day for one grid, town or category."""

    key: str
    label: str
    counts: list[int]
    total: int


@dataclass(frozen=True, slots=True)
class TimeSeries:
    """Day buckets (local days) and one series per group, biggest total first."""

    days: list[dt.date]
    series: list[Series]
    totals: list[int]  # per day, over every group


@dataclass(frozen=True, slots=True)
class ResponseRow:
    """How fast tips of one priority were acknowledged against their targets."""

    priority: str  # or "all"
    received: int
    acknowledged: int
    median_ack_minutes: float | None
    target_minutes: float | None  # median of the tips' own targets
    on_time: int
    late: int  # acknowledged late, or still waiting past the target
    waiting: int  # not acknowledged, target not reached yet

    @property
    def share_on_time(self) -> float | None:
        """Return the share of decided tips acknowledged on time (None when none are)."""
        decided = self.on_time + self.late
        return self.on_time / decided if decided else None


# --- periods ---------------------------------------------------------------------------


def local_day_bounds(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Return the UTC instants from the start of `first` to the end of `last` (local days)."""
    if last < first:
        raise StatsInvalid("the period ends before it starts", fields={"until": ["before since"]})
    if (last - first).days >= MAX_DAYS:
        raise StatsInvalid(
            f"at most {MAX_DAYS} days at a time", fields={"since": [f"at most {MAX_DAYS} days"]}
        )
    start = dt.datetime.combine(first, dt.time(), LOCAL_TZ).astimezone(dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), LOCAL_TZ).astimezone(dt.UTC)
    return start, end


def last_days(days: int, *, now: dt.datetime | None = None) -> tuple[dt.date, dt.date]:
    """Return (first, last) local dates of the `days` days up to today."""
    today = (now or utcnow()).astimezone(LOCAL_TZ).date()
    return today - dt.timedelta(days=max(days, 1) - 1), today


def _local_day(session: Session) -> ColumnElement:
    """Return a SQL expression for the local date a tip was received on."""
    hours = int(LOCAL_TZ.utcoffset(None).total_seconds() // 3600)
    if session.get_bind().dialect.name == "postgresql":
        # received_at holds naive UTC: shift it, then take the date.
        return cast(Tip.received_at + literal_column(f"interval '{hours} hours'"), Date)
    return func.date(Tip.received_at, f"{hours:+d} hours")


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _dashboard_conditions(
    session: Session, viewer: Viewer, filters: QueueFilters | None, first: dt.date, last: dt.date
) -> list[ColumnElement[bool]]:
    """Return the queue's scoped filter conditions for tips received in the local days.

    The dashboard counts every status unless the filters name some.
    """
    since, until = local_day_bounds(first, last)
    filters = filters or QueueFilters()
    filters = replace(
        filters,
        statuses=filters.statuses or STAFF_STATUSES,
        received_from=since,
        received_to=until,
    )
    return filter_conditions(session, viewer, filters)


# --- tips over time --------------------------------------------------------------------


def _grid_labels(session: Session, grid_ids: set[int]) -> dict[int, tuple[str, str, str]]:
    """Return grid id -> (code, name, path) for the ids (any layer version)."""
    if not grid_ids:
        return {}
    rows = session.execute(
        select(Grid.id, Grid.code, Grid.name, Grid.path).where(Grid.id.in_(grid_ids))
    )
    return {r.id: (r.code, r.name, r.path) for r in rows}


def _names_of(session: Session, codes: set[str]) -> dict[str, str]:
    """Return code -> name, the newest layer version's name winning."""
    if not codes:
        return {}
    rows = session.execute(
        select(Grid.code, Grid.name).where(Grid.code.in_(codes)).order_by(Grid.layer_id)
    )
    return {code: name for code, name in rows}


def tips_over_time(
    session: Session,
    viewer: Viewer,
    *,
    first: dt.date,
    last: dt.date,
    by: str = "category",
    filters: QueueFilters | None = None,
    locale: str = "zh",
) -> TimeSeries:
    """Count the visible tips received per local day, per grid, town or category."""
    if by not in GROUPINGS:
        raise StatsInvalid(f"group by one of {', '.join(GROUPINGS)}", fields={"by": [by]})
    conds = _dashboard_conditions(session, viewer, filters, first, last)
    day = _local_day(session).label("day")
    group_col = Tip.category_id if by == "category" else Tip.grid_id
    rows = session.execute(
        select(day, group_col, func.count()).where(*conds).group_by(day, group_col)
    ).all()

    labels: dict = {}
    if by == "category":
        for cat in session.scalars(select(Category)):
            labels[cat.id] = (cat.code, cat.name_en if locale == "en" else cat.name_zh)
    else:
        grids = _grid_labels(session, {g for _, g, _ in rows if g is not None})
        if by == "grid":
            labels = {gid: (code, name) for gid, (code, name, _) in grids.items()}
        else:
            towns = {gid: path.split("/")[1] for gid, (_, _, path) in grids.items() if "/" in path}
            names = _names_of(session, set(towns.values()))
            labels = {gid: (town, names.get(town, town)) for gid, town in towns.items()}

    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    position = {d: i for i, d in enumerate(days)}
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    names: dict[str, str] = {}
    for raw_day, group, n in rows:
        key, label = labels.get(group, (NO_GRID, t("extras.stats.no_grid", locale)))
        i = position.get(_as_date(raw_day))
        if i is None:  # a bucket at the edge of the period in another offset; cannot happen
            continue
        counts[key][i] += n
        names[key] = label
    series = sorted(
        (Series(k, names[k], v, sum(v)) for k, v in counts.items()),
        key=lambda s: (-s.total, s.key),
    )
    totals = [sum(s.counts[i] for s in series) for i in range(len(days))]
    return TimeSeries(days, series, totals)


# --- response times --------------------------------------------------------------------


def _minutes(delta: dt.timedelta) -> float:
    return delta.total_seconds() / 60.0


def response_times(
    session: Session,
    viewer: Viewer,
    *,
    first: dt.date,
    last: dt.date,
    filters: QueueFilters | None = None,
    now: dt.datetime | None = None,
) -> list[ResponseRow]:
    """Median time to acknowledge against the target, and the share on time, per priority.

    A tip's target is its own response clock (`ack_due_at`); tips from before
    the clock existed get the target the clock would give them now.
    """
    now = now or utcnow()
    conds = _dashboard_conditions(session, viewer, filters, first, last)
    rows = session.execute(
        select(
            Tip.priority,
            Tip.received_at,
            Tip.acknowledged_at,
            Tip.ack_due_at,
            Category.code,
            Tip.grid_path,
        )
        .join(Category, Category.id == Tip.category_id)
        .where(*conds)
    ).all()
    buckets: dict[str, dict[str, list]] = {
        p: {"ack": [], "target": [], "flags": []} for p in (*PRIORITIES, "all")
    }
    conn = session.connection()
    for priority, received, acked, due, category_code, grid_path in rows:
        if due is None:
            due, _ = due_times(
                conn,
                priority=priority,
                category_code=category_code,
                grid_path=grid_path,
                received_at=received,
            )
        if acked is not None:
            state = "on_time" if acked <= due else "late"
        else:
            state = "late" if now > due else "waiting"
        for key in (priority, "all"):
            b = buckets.setdefault(key, {"ack": [], "target": [], "flags": []})
            b["target"].append(_minutes(due - received))
            b["flags"].append(state)
            if acked is not None:
                b["ack"].append(_minutes(acked - received))
    result = []
    for key, b in buckets.items():
        result.append(
            ResponseRow(
                priority=key,
                received=len(b["flags"]),
                acknowledged=len(b["ack"]),
                median_ack_minutes=round(statistics.median(b["ack"]), 1) if b["ack"] else None,
                target_minutes=round(statistics.median(b["target"]), 1) if b["target"] else None,
                on_time=b["flags"].count("on_time"),
                late=b["flags"].count("late"),
                waiting=b["flags"].count("waiting"),
            )
        )
    return result


# --- CSV export ------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "ref",
    "received_at",
    "category",
    "priority",
    "status",
    "outcome",
    "town",
    "grid",
    "grid_name",
    "channel",
    "address",
    "description",
    "reporter",
    "acknowledged_at",
    "resolved_at",
    "latitude",
    "longitude",
)


def safe_cell(value) -> str:
    """Render a value for a spreadsheet cell, defusing text that would run as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _label(key: str, locale: str) -> str:
    """Return a catalogue label, or the code itself when the catalogue has none."""
    from app.i18n import catalogue

    return t(key, locale) if key in catalogue() else key.rsplit(".", 1)[-1]


def export_csv(
    session: Session, viewer: Viewer, filters: QueueFilters, *, locale: str = "zh"
) -> tuple[bytes, int]:
    """Return the visible tips matching the filters as CSV (UTF-8 with BOM) and the row count.

    Reporters appear by pseudonym only; channel identities are never joined in.
    More than EXPORT_MAX_ROWS rows is refused, so an export never half-succeeds.
    """
    conds = filter_conditions(session, viewer, filters)
    count = session.scalar(select(func.count()).select_from(Tip).where(*conds))
    if count > EXPORT_MAX_ROWS:
        raise StatsInvalid(
            f"{count} tips match; narrow the filters to at most {EXPORT_MAX_ROWS}",
            code="export_too_large",
        )
    category_name = Category.name_en if locale == "en" else Category.name_zh
    rows = session.execute(
        select(
            Tip.ref,
            Tip.received_at,
            category_name,
            Tip.priority,
            Tip.status,
            Tip.outcome,
            Tip.grid_id,
            Tip.grid_path,
            Tip.channel,
            Tip.address,
            Tip.description,
            Reporter.pseudonym,
            Tip.acknowledged_at,
            Tip.resolved_at,
            Tip.latitude,
            Tip.longitude,
        )
        .join(Category, Category.id == Tip.category_id)
        .outerjoin(Reporter, Reporter.id == Tip.reporter_id)
        .where(*conds)
        .order_by(Tip.received_at.desc(), Tip.id.desc())
        .limit(EXPORT_MAX_ROWS)
    ).all()
    grids = _grid_labels(session, {r.grid_id for r in rows if r.grid_id is not None})
    town_of = {gid: path.split("/")[1] for gid, (_, _, path) in grids.items() if "/" in path}
    town_names = _names_of(session, set(town_of.values()))

    out = io.StringIO()
    out.write("\ufeff")  # the BOM makes Excel read the file as UTF-8, not the local code page
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([t(f"extras.export.{c}", locale) for c in EXPORT_COLUMNS])
    for r in rows:
        code, name, _ = grids.get(r.grid_id, (None, None, None))
        town = town_of.get(r.grid_id)
        values = (
            r.ref,
            r.received_at,
            r[2],
            _label(f"priority.{r.priority}", locale),
            _label(f"admin.status.{r.status}", locale),
            _label(f"admin.outcome.{r.outcome}", locale) if r.outcome else None,
            town_names.get(town, town) if town else None,
            code,
            name,
            _label(f"admin.channel.{r.channel}", locale),
            r.address,
            r.description,
            r.pseudonym,
            r.acknowledged_at,
            r.resolved_at,
            r.latitude,
            r.longitude,
        )
        writer.writerow([safe_cell(v) for v in values])
    return out.getvalue().encode("utf-8"), len(rows)
