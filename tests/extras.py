"""Tips and staff for the admin-extras tests (landmarks, placement, reporters, stats, pages)."""

from __future__ import annotations

import datetime as dt
import functools
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.people.models import StaffUser
from app.people.passwords import hash_password
from app.people.services import create_staff_user
from app.reports.models import Tip
from app.reports.services import submit_tip
from app.reports.storage import LocalMediaStore
from app.staff.scope import Viewer, viewer_for

PASSWORD = "correct horse battery staple"


def add_tip(
    session: Session,
    settings: Settings,
    *,
    at: tuple[float, float] | None = None,
    category: str = "theft",
    description: str = "电动车电瓶被盗",
    address: str | None = None,
    reporter_id: int | None = None,
    channel: str = "api",
    now: dt.datetime | None = None,
) -> Tip:
    """Submit a text tip through the intake service and return its row."""
    fields: dict = {"category": category, "description": description}
    if at is not None:
        fields["latitude"], fields["longitude"] = at
    if address:
        fields["address"] = address
    result = submit_tip(
        session,
        settings,
        LocalMediaStore(settings.media_dir),
        fields=fields,
        uploads=[],
        channel=channel,
        reporter_id=reporter_id,
        now=now,
    )
    session.flush()
    return session.scalar(select(Tip).where(Tip.ref == result.ref))


def add_staff(
    session: Session, username: str, role: str, grids: tuple[str, ...] = (), *, password=None
) -> tuple[StaffUser, Viewer]:
    """Create a staff user scoped to grid codes, with the viewer the services take."""
    user = create_staff_user(session, username, role, grids=list(grids))
    if password is not None:
        user.password_hash = _hashed(password)  # argon2 costs 0.2 s a hash: once per password
    return user, viewer_for(session, user)


@functools.cache
def _hashed(password: str) -> str:
    return hash_password(password)


def sign_in(client, username: str, password: str = PASSWORD) -> str:
    """Sign in through the admin's login form; return the session's CSRF token."""
    client.get("/admin/login")
    login_token = client.get_cookie("tipline_login", path="/admin").value
    response = client.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf_token": login_token},
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/admin/landmarks").text)


def csrf_of(html: str) -> str:
    """Return the CSRF token a rendered admin page carries in its forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)
