"""The "needs location" queue: tips no grid could take, until a supervisor drops a pin."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import DomainError, NotFound
from app.grids.services import Placement, route_point
from app.outbox.services import queue_for_grid_workers
from app.reports.clock import restart_clock
from app.reports.models import Tip, TipEvent
from app.staff.scope import Viewer, visible_condition, visible_tip

NEEDS_LOCATION = "needs_location"
# Who may move a tip to another grid: grid workers see only their own grids' tips.
PLACING_ROLES = ("admin", "supervisor")


class OutsideArea(DomainError):
    """The pin is in no grid of the active layer; the tip keeps waiting where it was."""

    code = "outside_area"


def list_unplaced(session: Session, viewer: Viewer, *, limit: int = 100) -> list[Tip]:
    """Return the open tips without a grid that the viewer may see, most urgent first."""
    return list(
        session.scalars(
            select(Tip)
            .where(Tip.is_open.is_(True), Tip.grid_id.is_(None), visible_condition(viewer))
            .order_by(Tip.priority_rank, Tip.received_at, Tip.id)
            .limit(limit)
        )
    )


def place_tip(
    session: Session,
    viewer: Viewer,
    ref: str,
    *,
    lat: float,
    lon: float,
    nearest_m: float = 300.0,
) -> Placement:
    """Put a tip where a supervisor dropped the pin (WGS-84), re-route it and record who did.

    Also moves a tip that was routed already (a wrong fix). The grid workers of
    the new grid are told, as if the tip had just arrived.
    """
    if viewer.role not in PLACING_ROLES:
        raise NotFound("no such tip")
    tip = visible_tip(session, viewer, ref, for_update=True)
    placement = route_point(session, lat, lon, None, nearest_m=nearest_m)
    if not placement.routed:
        raise OutsideArea(
            "the point is outside every grid; choose a place inside the service area",
            fields={"latitude": ["outside every grid"], "longitude": ["outside every grid"]},
        )
    before = {
        "grid": tip.grid_path.rsplit("/", 1)[-1] if tip.grid_path else None,
        "routing": tip.routing_reason,
    }
    tip.latitude, tip.longitude = float(lat), float(lon)
    tip.accuracy_m = None  # a pin on the map, not a device's fix
    tip.location_source = "map"
    tip.grid_id = placement.grid_id
    tip.grid_path = "/".join(p["code"] for p in placement.path)
    tip.routing_reason = placement.reason
    tip.layer_version = placement.layer_version
    tip.neighbour_grids = placement.neighbours or None
    tip.flags = [f for f in tip.flags or [] if f != NEEDS_LOCATION]
    restart_clock(session, tip)  # targets may differ by area
    event = TipEvent(
        tip_id=tip.id,
        actor_kind="staff",
        actor_id=viewer.staff_id,
        action="placed",
        from_status=tip.status,
        to_status=tip.status,
        # Grid codes only: the audit trail is read widely, the coordinates stay on the tip.
        data={
            "source": "map",
            "from": before,
            "to": {
                "grid": placement.code,
                "routing": placement.reason,
                "layer_version": placement.layer_version,
            },
        },
    )
    session.add(event)
    session.flush()
    if tip.is_open:
        queue_for_grid_workers(
            session,
            placement.code,
            template="staff_new_tip",
            tip_id=tip.id,
            dedupe_prefix=f"placed:{event.id}:",
            params={
                "ref": tip.ref,
                "category": tip.category.code,
                "priority": tip.priority,
                "grid": placement.code,
            },
        )
    return placement
