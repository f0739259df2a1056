"""Invites, reporter tokens and staff users at the service level."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from app.people.errors import InvalidInvite, UserExists
from app.people.models import Invite, ReporterToken, StaffUser
from app.people.passwords import check_password
from app.people.services import (
    create_invites,
    create_staff_user,
    issue_reporter_token,
    redeem_invite,
    reporter_for_token,
)


def test_invites_are_stored_hashed_and_redeem_once(session):
    (code,) = create_invites(session, "k", "taxi_driver")
    assert code not in {i.code_hash for i in session.scalars(select(Invite))}
    reporter, token = redeem_invite(session, "k", code.replace("-", "").lower())
    assert reporter.role == "taxi_driver"
    assert reporter_for_token(session, token).id == reporter.id
    assert token not in {t.token_hash for t in session.scalars(select(ReporterToken))}
    with pytest.raises(InvalidInvite):
        redeem_invite(session, "k", code)


def test_expired_and_unknown_invites_fail_alike(session):
    (code,) = create_invites(session, "k", "volunteer", now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    for attempt in (code, "ZZZZ-ZZZZ-ZZZZ"):
        with pytest.raises(InvalidInvite) as info:
            redeem_invite(session, "k", attempt)
        assert info.value.message == "this invite code is not valid"


def test_tokens_resolve_only_to_their_reporter(session):
    from app.people.services import create_reporter

    a = create_reporter(session, "citizen")
    token = issue_reporter_token(session, a.id)
    assert reporter_for_token(session, token).pseudonym == a.pseudonym
    assert reporter_for_token(session, token + "x") is None


def test_staff_users_have_argon2_hashes_and_unique_names(session):
    create_staff_user(session, "lee", "supervisor", password="p" * 80, grids=["T01", "T01"])
    user = session.scalar(select(StaffUser))
    assert user.password_hash.startswith("$argon2id$")
    assert check_password(user.password_hash, "p" * 80)
    assert not check_password(user.password_hash, "p" * 79)
    assert [s.grid_code for s in user.scopes] == ["T01"]
    with pytest.raises(UserExists):
        create_staff_user(session, "lee", "admin")
