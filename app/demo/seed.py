"""Seed the demo city once; running it again changes nothing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.grids.demo_layer import build_demo_layer
from app.grids.models import Grid, GridLayer
from app.grids.services import import_layer
from app.people.models import Invite, StaffUser
from app.people.services import create_invites, create_staff_user, find_or_create_organisation
from app.reports.categories import seed_categories
from app.reports.triage import seed_urgent_words

# Demo sign-ins are printed by `make run`; they exist only in the synthetic demo database.
DEMO_PASSWORD = "tipline-demo"  # noqa: S105
DEMO_ORGS = (
    ("金桥出租车公司 (demo)", "taxi_company", False, False),
    ("站前志愿者服务队 (demo)", "volunteer_team", False, False),
    ("鲅鱼圈港务集团 (demo)", "enterprise", True, True),
    ("开发区化工有限公司 (demo)", "enterprise", False, True),
    ("市第一中学 (demo)", "unit", False, True),
)
CENTRE = (40.6406, 122.5052)


def _grid_codes(session: Session, layer_id: int, level: str, limit: int) -> list[str]:
    """Return the first codes of one level of the demo layer, in code order."""
    return list(
        session.scalars(
            select(Grid.code)
            .where(Grid.layer_id == layer_id, Grid.level == level)
            .order_by(Grid.code)
            .limit(limit)
        )
    )


def _seed_staff(session: Session, layer_id: int) -> list[str]:
    """Create the demo admin, supervisors and grid workers near the city centre."""
    from app.grids.services import route_point

    centre = route_point(session, *CENTRE, None)
    town = (
        centre.path[1]["code"] if centre.grid_id else _grid_codes(session, layer_id, "town", 1)[0]
    )
    city = _grid_codes(session, layer_id, "city", 1)[0]
    create_staff_user(session, "admin", "admin", password=DEMO_PASSWORD)
    create_staff_user(session, "supervisor", "supervisor", password=DEMO_PASSWORD, grids=[city])
    create_staff_user(
        session, "town-supervisor", "supervisor", password=DEMO_PASSWORD, grids=[town]
    )
    workers = [centre.code] if centre.grid_id else []
    workers += [c for c in _grid_codes(session, layer_id, "grid", 3) if c not in workers]
    for i, code in enumerate(workers[:3], start=1):
        create_staff_user(
            session, f"grid-worker-{i}", "grid_worker", password=DEMO_PASSWORD, grids=[code]
        )
    return [
        f"staff: admin / supervisor / town-supervisor ({town}) / grid-worker-1..3, "
        f"password {DEMO_PASSWORD}"
    ]


def _seed_response_rules(session: Session) -> list[str]:
    """Seed the response targets (3 minutes for urgent tips in the centre town) and templates."""
    from app.grids.services import route_point
    from app.reports.clock import seed_response_targets
    from app.reports.templates import seed_response_templates

    centre = route_point(session, *CENTRE, None)
    town = centre.path[1]["code"] if centre.grid_id and len(centre.path) > 1 else None
    targets = seed_response_targets(session, centre_town_code=town)
    templates = seed_response_templates(session)
    if targets or templates:
        return [f"response targets: {targets} added; response templates: {templates} added"]
    return []


def seed_demo(session: Session, settings: Settings) -> list[str]:
    """Seed what is missing and return lines to print (invite codes only when new)."""
    lines: list[str] = []
    added = seed_categories(session)
    if added:
        lines.append(f"categories: {added} added")
    layer = session.scalar(select(GridLayer).where(GridLayer.active.is_(True)))
    if layer is None:
        result = import_layer(
            session,
            build_demo_layer(),
            crs="wgs84",
            replace=False,
            source_name="demo city (synthetic)",
            synthetic=True,
        )
        layer = session.scalar(select(GridLayer).where(GridLayer.active.is_(True)))
        lines.append(f"grid layer v{result.version}: {result.counts}")
    orgs = {
        name: find_or_create_organisation(session, name, kind)
        for name, kind, _room, _liaison in DEMO_ORGS
    }
    for name, _kind, room, liaison in DEMO_ORGS:
        orgs[name].has_police_room, orgs[name].has_police_liaison = room, liaison
        orgs[name].synthetic = True
    if session.scalar(select(StaffUser.id).where(StaffUser.username == "admin")) is None:
        lines += _seed_staff(session, layer.id)
    if session.scalar(select(Invite.id).limit(1)) is None:
        names = list(orgs)
        for role, org in (
            ("taxi_driver", names[0]),
            ("volunteer", names[1]),
            ("enterprise_guard", names[2]),
        ):
            codes = create_invites(
                session, settings.secret_key, role, organisation_id=orgs[org].id, count=3
            )
            lines.append(f"invites ({role}, {org}): {' '.join(codes)}")
    lines += _seed_response_rules(session)
    words = seed_urgent_words(session)
    if words:
        lines.append(f"urgent words: {words} added")
    if not lines:
        lines.append("demo city already seeded")
    return lines
