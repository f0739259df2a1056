"""Admin work on the grid layer: upload a new version, and say who looks after which grid.

Both are admin-only and leave an AuditEntry. A new layer reaches every worker
without a restart: routing re-reads which layer is active at most 10 s later
(app.grids.services, app.refcache), and this process at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import DomainError, NotFound
from app.grids.models import Grid, GridLayer
from app.grids.services import ImportResult, import_layer
from app.people.models import AuditEntry, StaffScope, StaffUser
from app.staff.scope import Viewer

MAX_LAYER_BYTES = 50 * 1024 * 1024
SCOPED_ROLES = ("supervisor", "grid_worker")


class LayerUnreadable(DomainError):
    """The uploaded file is not a GeoJSON document at all."""

    code = "layer_unreadable"


@dataclass(frozen=True, slots=True)
class Assignment:
    """A staff member who can be scoped, with the grid codes they look after."""

    staff_id: int
    username: str
    role: str
    active: bool
    codes: list[str]


def _admin_only(viewer: Viewer) -> None:
    # Not 403: to everyone else these actions do not exist.
    if viewer.role != "admin":
        raise NotFound("no such page")


def _audit(session: Session, viewer: Viewer, action: str, kind: str, target: int | None, **data):
    session.add(
        AuditEntry(
            staff_id=viewer.staff_id, action=action, target_kind=kind, target_id=target, data=data
        )
    )


def read_layer_file(data: bytes) -> dict:
    """Parse an uploaded grid file, refusing what is not a JSON object."""
    if len(data) > MAX_LAYER_BYTES:
        raise LayerUnreadable(f"the file is larger than {MAX_LAYER_BYTES // (1024 * 1024)} MB")
    try:
        collection = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LayerUnreadable(f"the file is not GeoJSON (UTF-8 JSON): {exc}") from None
    if not isinstance(collection, dict):
        raise LayerUnreadable("the file is not a GeoJSON FeatureCollection")
    return collection


def upload_layer(
    session: Session, viewer: Viewer, data: bytes, *, crs: str, replace: bool, source_name: str
) -> ImportResult:
    """Check and import a grid file exactly as `tipline grids import` does, and audit it."""
    _admin_only(viewer)
    result = import_layer(
        session, read_layer_file(data), crs=crs, replace=replace, source_name=source_name
    )
    _audit(
        session,
        viewer,
        "import_layer",
        "grid_layer",
        result.layer_id,
        version=result.version,
        crs=result.crs,
        counts=result.counts,
        replaced_version=result.replaced_version,
        source_name=source_name[:255],
        warnings=len(result.warnings),
    )
    session.flush()
    return result


def list_layers(session: Session, viewer: Viewer, *, limit: int = 20) -> list[GridLayer]:
    """Return the newest layer versions, the active one among them."""
    _admin_only(viewer)
    return list(session.scalars(select(GridLayer).order_by(GridLayer.version.desc()).limit(limit)))


def list_assignments(session: Session, viewer: Viewer) -> list[Assignment]:
    """Return the supervisors and grid workers with their scope codes, by role and name."""
    _admin_only(viewer)
    staff = session.scalars(
        select(StaffUser)
        .where(StaffUser.role.in_(SCOPED_ROLES))
        .order_by(StaffUser.role, StaffUser.username)
    ).all()
    scopes: dict[int, list[str]] = {}
    for staff_id, code in session.execute(
        select(StaffScope.staff_id, StaffScope.grid_code).order_by(StaffScope.grid_code)
    ):
        scopes.setdefault(staff_id, []).append(code)
    return [Assignment(s.id, s.username, s.role, s.active, scopes.get(s.id, [])) for s in staff]


def _scoped_staff(session: Session, staff_id: int) -> StaffUser:
    user = session.get(StaffUser, staff_id)
    if user is None or user.role not in SCOPED_ROLES:
        raise NotFound("no such staff member")
    return user


def assign_scope(session: Session, viewer: Viewer, *, staff_id: int, grid_code: str) -> bool:
    """Let a supervisor or grid worker see a grid's subtree; False if they already did."""
    _admin_only(viewer)
    user = _scoped_staff(session, staff_id)
    grid_code = (grid_code or "").strip()
    level = session.scalar(
        select(Grid.level)
        .join(GridLayer, GridLayer.id == Grid.layer_id)
        .where(GridLayer.active.is_(True), Grid.code == grid_code)
    )
    if level is None:
        raise DomainError(
            "no grid with this code in the active layer",
            code="unknown_grid",
            fields={"grid_code": ["not in the active layer"]},
        )
    if session.get(StaffScope, (user.id, grid_code)) is not None:
        return False
    session.add(StaffScope(staff_id=user.id, grid_code=grid_code))
    _audit(session, viewer, "assign_scope", "staff", user.id, grid_code=grid_code, level=level)
    session.flush()
    session.expire(user, ["scopes"])
    return True


def unassign_scope(session: Session, viewer: Viewer, *, staff_id: int, grid_code: str) -> bool:
    """Take a grid out of a staff member's scope; False if it was not in it."""
    _admin_only(viewer)
    user = _scoped_staff(session, staff_id)
    removed = session.execute(
        delete(StaffScope).where(StaffScope.staff_id == user.id, StaffScope.grid_code == grid_code)
    ).rowcount
    if removed:
        _audit(session, viewer, "unassign_scope", "staff", user.id, grid_code=grid_code)
        session.flush()
    session.expire(user, ["scopes"])
    return bool(removed)
