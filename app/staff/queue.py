"""The triage queue: open tips in scope, most urgent first, then by time left to acknowledge.

The order (priority_rank, ack_due_at, id) is the ix_tips_queue index, so a page
is an index range scan: pages continue from a keyset cursor, never an OFFSET.
Tips without an acknowledgement target sort last within their priority
(NULLS LAST, as PostgreSQL's index stores them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Row, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.grids.models import Grid
from app.people.models import Reporter, StaffUser
from app.reports.categories import category_names
from app.reports.models import PRIORITIES, STAFF_STATUSES, Category, Tip
from app.staff.scope import Viewer, path_prefix_condition, viewer_for, visible_condition

OPEN_STATUSES = ("new", "acknowledged", "assigned", "in_progress")
MAX_PAGE = 200
NEEDS_LOCATION = "none"  # the grid filter value for tips that have no grid yet


class BadCursor(DomainError):
    """A pagination cursor this service did not make."""

    code = "bad_cursor"
    status = 400


@dataclass(frozen=True, slots=True)
class QueueFilters:
    """What a queue page is narrowed to; empty values mean "any"."""

    statuses: tuple[str, ...] = ()  # default: the open statuses
    priority: str | None = None
    category: str | None = None
    grid: str | None = None  # a code at any level, or "none" for the needs-location queue
    channel: str | None = None
    received_from: dt.datetime | None = None
    received_to: dt.datetime | None = None
    flagged: bool = False
    assigned_to_me: bool = False

    def __post_init__(self):
        for name, value, allowed in (
            ("status", self.statuses, STAFF_STATUSES),
            ("priority", (self.priority,) if self.priority else (), PRIORITIES),
        ):
            bad = [v for v in value if v not in allowed]
            if bad:
                raise DomainError(
                    f"unknown {name} {bad[0]!r}",
                    code="validation_error",
                    fields={name: [f"must be one of {', '.join(allowed)}"]},
                )


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the previous page stopped: the last row's sort key."""

    rank: int
    due: dt.datetime | None
    id: int

    def encode(self) -> str:
        """Return the cursor as an opaque URL-safe string."""
        due = "-" if self.due is None else str(int(self.due.timestamp() * 1_000_000))
        return f"{self.rank}.{due}.{self.id}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """Parse a cursor made by encode(), or raise BadCursor."""
        try:
            rank, due, id_ = value.split(".")
            micros = None if due == "-" else int(due)
            return cls(
                int(rank),
                None if micros is None else dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC),
                int(id_),
            )
        except (ValueError, OverflowError, OSError):
            raise BadCursor("this page link is not valid; start from the first page") from None


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One line of the queue: everything the list shows, pseudonyms only.

    `tip` is a row of the tip's queue columns (id, ref, status, priority, clock...),
    read by attribute like the model, without the cost of loading whole entities.
    """

    tip: Row
    category_code: str
    category_zh: str
    category_en: str
    grid_code: str | None
    grid_name: str | None
    pseudonym: str | None
    assignee: str | None


@dataclass(frozen=True, slots=True)
class QueuePage:
    """A page of the queue and the cursor of the next one (None on the last page)."""

    rows: list[QueueRow]
    next_cursor: str | None
    filters: QueueFilters = field(default_factory=QueueFilters)


_tips = Tip.__table__
# What a queue line shows and what the clock and the cursor need. Table columns, not
# ORM attributes: the result's column map then matches by identity on every page.
_TIP_COLUMNS = (
    "id",
    "ref",
    "status",
    "outcome",
    "priority",
    "priority_rank",
    "description",
    "flags",
    "channel",
    "received_at",
    "ack_due_at",
    "resolve_due_at",
    "acknowledged_at",
    "resolved_at",
    "is_open",
    "escalation_level",
    "grid_path",
    "assignee_id",
    "category_id",  # keep last: _named unpacks it and the four names after it by position
)


def _name_of(column, key):
    """Return a correlated scalar subquery: one primary-key probe per row returned.

    Joins would cost the planner more than the whole index scan (four outer joins
    took ~0.8 ms to plan against ~0.1 ms to run); a subquery in the select list
    adds almost nothing to planning and runs only for the rows the LIMIT keeps.
    """
    return select(column).where(column.table.c.id == key).scalar_subquery()


_QUEUE_SELECT = select(
    *(_tips.c[name] for name in _TIP_COLUMNS),
    _name_of(Grid.__table__.c.code, _tips.c.grid_id).label("grid_code"),
    _name_of(Grid.__table__.c.name, _tips.c.grid_id).label("grid_name"),
    _name_of(Reporter.__table__.c.pseudonym, _tips.c.reporter_id).label("pseudonym"),
    _name_of(StaffUser.__table__.c.username, _tips.c.assignee_id).label("assignee"),
).order_by(_tips.c.priority_rank, _tips.c.ack_due_at.asc().nulls_last(), _tips.c.id)


def _named(found: list[Row], names: dict) -> list[QueueRow]:
    rows = []
    for r in found:
        *_, category_id, grid_code, grid_name, pseudonym, assignee = r
        rows.append(QueueRow(r, *names[category_id], grid_code, grid_name, pseudonym, assignee))
    return rows


def _rows(session: Session, query: Select) -> list[QueueRow]:
    """Run a queue statement (plain rows, no ORM objects); categories named from memory."""
    found = session.connection().execute(query).all()
    return _named(found, category_names(session, {r.category_id for r in found}))


def _after(cursor: Cursor):
    """Return "comes after the cursor" in the (rank, due NULLS LAST, id) order."""
    if cursor.due is None:
        same_rank = and_(Tip.ack_due_at.is_(None), Tip.id > cursor.id)
    else:
        same_rank = or_(
            Tip.ack_due_at > cursor.due,
            Tip.ack_due_at.is_(None),
            and_(Tip.ack_due_at == cursor.due, Tip.id > cursor.id),
        )
    return and_(
        Tip.priority_rank >= cursor.rank,  # an index bound the planner can use directly
        or_(Tip.priority_rank > cursor.rank, same_rank),
    )


def _grid_condition(session: Session, code: str):
    if code == NEEDS_LOCATION:
        return Tip.grid_path.is_(None)
    paths = session.scalars(select(Grid.path).where(Grid.code == code).distinct()).all()
    if not paths:
        return false()
    return or_(*(path_prefix_condition(Tip.grid_path, p) for p in paths))


def filter_conditions(session: Session, viewer: Viewer, filters: QueueFilters) -> list:
    """Return the WHERE conditions of a filtered, scoped tip list (queue, exports, counts)."""
    conditions = [visible_condition(viewer)]
    statuses = filters.statuses
    # is_open is the leading column of ix_tips_queue; the workflow keeps it equal to
    # "status is one of the open statuses", so the default needs no status test at all.
    if not statuses or set(statuses) == set(OPEN_STATUSES):
        conditions.append(Tip.is_open.is_(True))
    else:
        conditions.append(Tip.status.in_(statuses))
        if all(s in OPEN_STATUSES for s in statuses):
            conditions.append(Tip.is_open.is_(True))
        elif not any(s in OPEN_STATUSES for s in statuses):
            conditions.append(Tip.is_open.is_(False))
    if filters.priority:
        conditions.append(Tip.priority == filters.priority)
    if filters.category:
        conditions.append(
            Tip.category_id.in_(select(Category.id).where(Category.code == filters.category))
        )
    if filters.grid:
        conditions.append(_grid_condition(session, filters.grid))
    if filters.channel:
        conditions.append(Tip.channel == filters.channel)
    if filters.received_from:
        conditions.append(Tip.received_at >= filters.received_from)
    if filters.received_to:
        conditions.append(Tip.received_at < filters.received_to)
    if filters.flagged:
        conditions.append(func.json_array_length(Tip.flags) > 0)
    if filters.assigned_to_me:
        conditions.append(Tip.assignee_id == viewer.staff_id)
    return conditions


def queue_query(session: Session, viewer: Viewer, filters: QueueFilters) -> Select:
    """Return the ordered, scoped and filtered queue as a statement (without a limit)."""
    return _QUEUE_SELECT.where(*filter_conditions(session, viewer, filters))


def queue_page(
    session: Session,
    staff: Viewer | StaffUser,
    *,
    filters: QueueFilters | None = None,
    after: str | None = None,
    limit: int = 50,
) -> QueuePage:
    """Return one page of the triage queue as the staff member may see it."""
    viewer = staff if isinstance(staff, Viewer) else viewer_for(session, staff)
    filters = filters or QueueFilters()
    limit = max(1, min(limit, MAX_PAGE))
    query = queue_query(session, viewer, filters)
    if after:
        query = query.where(_after(Cursor.decode(after)))
    rows = _rows(session, query.limit(limit + 1))
    next_cursor = None
    if len(rows) > limit:
        del rows[limit:]
        last = rows[-1].tip
        next_cursor = Cursor(last.priority_rank, last.ack_due_at, last.id).encode()
    return QueuePage(rows, next_cursor, filters)


def open_counts(session: Session, viewer: Viewer) -> dict[str, int]:
    """Count the open tips in scope by priority (the queue's header; never beyond scope)."""
    counts = dict.fromkeys(PRIORITIES, 0)
    rows = session.execute(
        select(Tip.priority, func.count())
        .where(Tip.is_open.is_(True), visible_condition(viewer))
        .group_by(Tip.priority)
    )
    for priority, n in rows:
        counts[priority] = n
    return counts


def latest_visible_id(session: Session, viewer: Viewer) -> int:
    """Return the newest tip id in scope (the live refresh asks for tips after it)."""
    return session.scalar(select(func.max(Tip.id)).where(visible_condition(viewer))) or 0


def new_open_tips(
    session: Session, viewer: Viewer, *, after_id: int, limit: int = 20
) -> list[QueueRow]:
    """Return open tips in scope newer than `after_id`, most urgent first (the live refresh)."""
    query = queue_query(session, viewer, QueueFilters()).where(Tip.id > after_id)
    return _rows(session, query.limit(limit))
