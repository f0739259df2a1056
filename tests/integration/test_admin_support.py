"""Helpers shared by the admin and staff API tests (no tests here): staff, tips, sign-in."""

from __future__ import annotations

import functools
import re

from argon2 import PasswordHasher
from sqlalchemy import select

from app.people.models import ReporterIdentity, StaffScope, StaffUser
from app.people.services import issue_staff_token
from app.reports.models import Tip
from app.reports.services import Upload, submit_tip
from app.reports.storage import LocalMediaStore
from tests.images import phone_jpeg
from tests.layers import centre_of

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# argon2 verification reads its cost from the stored hash: test users get a cheap one, so
# a sign-in costs milliseconds instead of ~0.16 s (more on a loaded machine).
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@functools.cache
def password_hash(password: str = PASSWORD) -> str:
    """Return an argon2id hash of the password (cheap parameters, same format)."""
    return _cheap.hash(password)


def make_staff(
    factory, username: str, role: str, grids=(), *, password: str = PASSWORD, **extra
) -> int:
    """Create a staff user scoped to grid codes; return the id."""
    with factory() as s:
        user = StaffUser(
            username=username,
            role=role,
            password_hash=password_hash(password),
            scopes=[StaffScope(grid_code=c) for c in grids],
            **extra,
        )
        s.add(user)
        s.commit()
        return user.id


def link_telegram(session, reporter_id: int, chat: str) -> None:
    """Give a reporter a Telegram identity, as the bot would: staff must never see it."""
    session.add(
        ReporterIdentity(
            reporter_id=reporter_id,
            channel="telegram",
            external_hash=chat.rjust(64, "h")[-64:],
            external_address=chat,
        )
    )


def staff_token(factory, username: str) -> str:
    """Issue a staff API token."""
    with factory() as s:
        token = issue_staff_token(s, username)
        s.commit()
        return token


def make_tip(
    factory,
    settings,
    *,
    grid: str | None = "G1",
    category: str = "robbery_violence",
    description: str = "有人持刀抢劫 knife robbery",
    photos: int = 0,
    reporter_id: int | None = None,
    now=None,
) -> str:
    """Submit a tip through the intake service (in grid G1..G4, or without a location)."""
    fields = {"category": category, "description": description}
    if grid is not None:
        fields["latitude"], fields["longitude"] = centre_of(grid)
    uploads = [Upload(phone_jpeg(320 + i, 240, gps=None), f"p{i}.jpg") for i in range(photos)]
    with factory() as s:
        result = submit_tip(
            s,
            settings,
            LocalMediaStore(settings.media_dir),
            fields=fields,
            uploads=uploads,
            channel="api",
            reporter_id=reporter_id,
            now=now,
        )
        s.commit()
        return result.ref


def tip_row(factory, ref: str) -> Tip:
    """Read a tip afresh."""
    with factory() as s:
        return s.scalar(select(Tip).where(Tip.ref == ref))


def csrf_from(html: str) -> str:
    """Return the CSRF token of the first form in a page."""
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def login_form(client, *, lang: str | None = None) -> str:
    """Open the sign-in page and return its (pre-session) CSRF token."""
    page = client.get("/admin/login" + (f"?lang={lang}" if lang else ""))
    assert page.status_code == 200
    return csrf_from(page.get_data(as_text=True))


def sign_in(client, username: str, password: str = PASSWORD, *, code: str = "", expect: int = 303):
    """Sign in through the form; return the response (a redirect when it worked)."""
    token = login_form(client)
    response = client.post(
        "/admin/login",
        data={"csrf_token": token, "username": username, "password": password, "code": code},
    )
    assert response.status_code == expect, response.get_data(as_text=True)[:500]
    return response


def page_csrf(client, path: str = "/admin/") -> str:
    """Return the session's CSRF token from an admin page."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return csrf_from(page.get_data(as_text=True))
