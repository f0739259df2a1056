"""Who may see which tips: the one place that turns a staff user into a SQL condition.

Every staff surface (admin pages, photo URLs, history, exports, counts, the
staff API) goes through `visible_condition` or `visible_tip`, so a tip out of
scope is simply not there: 404, never 403, and never counted.

Rules: admins and city supervisors see everything; other supervisors see the
subtrees of their scope grids and the tips that have no grid yet ("needs
location"); grid workers see the subtrees of their grids only. A scope is a
grid code at any level; a tip remembers its grid's path at routing time, so
visibility is a prefix match on `Tip.grid_path`, in every layer version that
has the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, ColumnExpressionArgument, false, or_, select, true
from sqlalchemy.orm import Session

from app.grids.models import Grid
from app.identifiers import normalise_ref
from app.people.models import StaffScope, StaffUser
from app.reports.errors import TipNotFound
from app.reports.models import Photo, Tip


@dataclass(frozen=True, slots=True)
class Viewer:
    """A staff user's reach, resolved once per request: roles and grid paths, no ORM rows."""

    staff_id: int
    role: str
    sees_all: bool
    sees_unrouted: bool
    paths: tuple[str, ...] = ()

    def can_see(self, grid_path: str | None) -> bool:
        """Say whether a tip with this grid path is visible (the same rule as the SQL)."""
        if self.sees_all:
            return True
        if grid_path is None:
            return self.sees_unrouted
        return any(grid_path == p or grid_path.startswith(p + "/") for p in self.paths)


def _escape_like(value: str) -> str:
    # Grid codes may hold "_" or "%", which LIKE would take as wildcards.
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def path_prefix_condition(column, path: str) -> ColumnElement[bool]:
    """Return `column` is `path` or lies below it, as an index-friendly prefix match."""
    return or_(column == path, column.like(_escape_like(path) + "/%", escape="\\"))


def _outermost(paths: set[str]) -> tuple[str, ...]:
    """Drop paths that lie under another path of the set (they add nothing)."""
    ordered = sorted(paths, key=lambda p: (p.count("/"), p))
    kept: list[str] = []
    for p in ordered:
        if not any(p == k or p.startswith(k + "/") for k in kept):
            kept.append(p)
    return tuple(sorted(kept))


def viewers_for(session: Session, staff: list[StaffUser]) -> dict[int, Viewer]:
    """Resolve the scope codes of several staff users to grid paths in one query."""
    found: dict[int, list[tuple[str, str]]] = {s.id: [] for s in staff}
    scoped = [s.id for s in staff if s.role != "admin"]
    if scoped:
        rows = session.execute(
            select(StaffScope.staff_id, Grid.path, Grid.level)
            .join(Grid, Grid.code == StaffScope.grid_code)
            .where(StaffScope.staff_id.in_(scoped))
            .distinct()
        )
        for staff_id, path, level in rows:
            found[staff_id].append((path, level))
    return {s.id: _viewer(s, found[s.id]) for s in staff}


def viewer_for(session: Session, staff: StaffUser) -> Viewer:
    """Resolve a staff user's scope codes to grid paths (every layer version)."""
    return viewers_for(session, [staff])[staff.id]


def _viewer(staff: StaffUser, grids: list[tuple[str, str]]) -> Viewer:
    supervisor = staff.role == "supervisor"
    if staff.role == "admin" or (supervisor and any(level == "city" for _, level in grids)):
        return Viewer(staff.id, staff.role, sees_all=True, sees_unrouted=True)
    return Viewer(
        staff.id,
        staff.role,
        sees_all=False,
        sees_unrouted=supervisor,
        paths=_outermost({path for path, _ in grids}),
    )


def visible_condition(viewer: Viewer) -> ColumnElement[bool]:
    """Return the SQL condition on Tip for the tips this viewer may see."""
    if viewer.sees_all:
        return true()
    parts: list[ColumnExpressionArgument[bool]] = [
        path_prefix_condition(Tip.grid_path, p) for p in viewer.paths
    ]
    if viewer.sees_unrouted:
        parts.append(Tip.grid_path.is_(None))
    return or_(*parts) if parts else false()


def visible_tip(session: Session, viewer: Viewer, ref: str, *, for_update: bool = False) -> Tip:
    """Return the tip with this reference if the viewer may see it, else raise TipNotFound."""
    canonical = normalise_ref(ref or "")
    if canonical is None:
        raise TipNotFound("no such tip")
    query = select(Tip).where(Tip.ref == canonical, visible_condition(viewer))
    if for_update:
        query = query.with_for_update()
    tip = session.scalar(query)
    if tip is None:
        raise TipNotFound("no such tip")
    return tip


def visible_tip_by_id(session: Session, viewer: Viewer, tip_id: int) -> Tip:
    """Return the tip with this id if the viewer may see it, else raise TipNotFound."""
    tip = session.scalar(select(Tip).where(Tip.id == tip_id, visible_condition(viewer)))
    if tip is None:
        raise TipNotFound("no such tip")
    return tip


def visible_photo(session: Session, viewer: Viewer, photo_id: int) -> Photo:
    """Return a photo whose tip the viewer may see, else raise TipNotFound (also for no photo)."""
    photo = session.scalar(
        select(Photo)
        .join(Tip, Tip.id == Photo.tip_id)
        .where(Photo.id == photo_id, visible_condition(viewer))
    )
    if photo is None:
        raise TipNotFound("no such photo")
    return photo


def staff_who_can_see(session: Session, tip: Tip) -> list[StaffUser]:
    """Return the active staff who may see a tip (the people it can be assigned to)."""
    codes = tip.grid_path.split("/") if tip.grid_path else []
    candidates = session.scalars(
        select(StaffUser)
        .where(
            StaffUser.active.is_(True),
            or_(
                StaffUser.role.in_(("admin", "supervisor")),
                StaffUser.id.in_(
                    select(StaffScope.staff_id).where(StaffScope.grid_code.in_(codes))
                ),
            ),
        )
        .order_by(StaffUser.role, StaffUser.username)
    ).all()
    viewers = viewers_for(session, list(candidates))
    return [s for s in candidates if viewers[s.id].can_see(tip.grid_path)]
