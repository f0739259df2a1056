"""Reporters admin: scoped list and counts, status changes, the admin-only audited reveal."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.errors import DomainError, NotFound
from app.people.models import AuditEntry, Reporter
from app.people.services import create_reporter, find_or_create_organisation
from app.staff.reporters_admin import (
    change_reporter_status,
    get_reporter,
    list_reporters,
    reveal_identity,
)
from tests.extras import PASSWORD, add_staff, add_tip, csrf_of, sign_in
from tests.integration.test_admin_support import link_telegram
from tests.layers import centre_of

TELEGRAM_CHAT = "987654321"


@pytest.fixture
def world(seeded, settings):
    """Reporter A with tips in G1 and G2 and a Telegram identity; B with one tip in G2; C none."""
    with seeded() as s:
        staff = {
            "admin": add_staff(s, "admin", "admin", password=PASSWORD)[1],
            "city": add_staff(s, "city", "supervisor", ("C",), password=PASSWORD)[1],
            "town": add_staff(s, "town", "supervisor", ("T1",))[1],
            "g1": add_staff(s, "g1", "grid_worker", ("G1",), password=PASSWORD)[1],
            "g1sup": add_staff(s, "g1sup", "supervisor", ("G1",), password=PASSWORD)[1],
        }
        org = find_or_create_organisation(s, "金桥出租车公司", "taxi_company")
        a = create_reporter(s, "taxi_driver", org.id)
        b = create_reporter(s, "volunteer")
        c = create_reporter(s, "citizen")
        link_telegram(s, a.id, TELEGRAM_CHAT)
        add_tip(s, settings, at=centre_of("G1"), reporter_id=a.id)
        confirmed = add_tip(s, settings, at=centre_of("G2"), reporter_id=a.id)
        confirmed.outcome, confirmed.status, confirmed.is_open = "confirmed", "resolved", False
        add_tip(s, settings, at=centre_of("G2"), reporter_id=b.id)
        s.commit()
        names = {"a": a.pseudonym, "b": b.pseudonym, "c": c.pseudonym}
    return seeded, staff, names


def test_list_is_scoped_and_counts_only_visible_tips(world):
    factory, staff, names = world
    with factory() as s:
        everyone = {r.pseudonym: r for r in list_reporters(s, staff["admin"])}
        assert set(everyone) == set(names.values())  # admins see reporters without tips too
        a = everyone[names["a"]]
        assert (a.tips, a.open_tips, a.confirmed, a.malicious) == (2, 1, 1, 0)
        assert a.organisation == "金桥出租车公司" and a.role == "taxi_driver"
        assert everyone[names["c"]].tips == 0
        assert {r.pseudonym for r in list_reporters(s, staff["city"])} == set(names.values())

        mine = {r.pseudonym: r for r in list_reporters(s, staff["g1sup"])}
        assert set(mine) == {names["a"]}  # only through a tip in G1
        assert mine[names["a"]].tips == 1  # the G2 tip is not counted
        with pytest.raises(NotFound):
            get_reporter(s, staff["g1sup"], names["b"])
        with pytest.raises(NotFound):
            list_reporters(s, staff["g1"])  # grid workers handle tips, not reporters

        assert [r.pseudonym for r in list_reporters(s, staff["admin"], query=names["b"])] == [
            names["b"]
        ]
        assert [r.pseudonym for r in list_reporters(s, staff["admin"], role="volunteer")] == [
            names["b"]
        ]
        assert get_reporter(s, staff["town"], names["b"].lower()).tips == 1


def test_status_changes_go_through_the_abuse_service(world):
    factory, staff, names = world
    with factory() as s:
        with pytest.raises(DomainError) as exc:
            change_reporter_status(s, staff["town"], names["a"], "ban", reason="")
        assert exc.value.code == "reason_required"
        row = change_reporter_status(s, staff["town"], names["a"], "ban", reason="虚假举报刷积分")
        assert row.status == "banned"
        row = change_reporter_status(s, staff["town"], names["a"], "approve", reason=None)
        assert row.status == "active"
        row = change_reporter_status(s, staff["admin"], names["c"], "suspend", reason="待核查")
        assert row.status == "suspended"
        with pytest.raises(NotFound):  # not a reporter this supervisor knows of
            change_reporter_status(s, staff["g1sup"], names["b"], "ban", reason="不应该")
        with pytest.raises(DomainError):
            change_reporter_status(s, staff["admin"], names["c"], "delete", reason="x")
        s.commit()
        actions = s.execute(
            select(AuditEntry.action, AuditEntry.staff_id).order_by(AuditEntry.id)
        ).all()
        assert actions == [
            ("reporter_ban", staff["town"].staff_id),
            ("reporter_unban", staff["town"].staff_id),
            ("reporter_suspend", staff["admin"].staff_id),
        ]


def test_reveal_is_admin_only_needs_a_reason_and_is_audited(world):
    factory, staff, names = world
    with factory() as s:
        for who in ("city", "town", "g1", "g1sup"):
            with pytest.raises(NotFound):
                reveal_identity(s, staff[who], names["a"], reason="需要联系核实情况")
        with pytest.raises(NotFound):
            reveal_identity(s, staff["admin"], "R-NOPE", reason="需要联系核实情况")
        with pytest.raises(DomainError) as exc:
            reveal_identity(s, staff["admin"], names["a"], reason="  a  ")
        assert exc.value.code == "reason_required"
        assert s.scalar(select(AuditEntry.id)) is None

        shown = reveal_identity(s, staff["admin"], names["a"], reason="涉嫌诬告，需联系核实")
        assert [(i.channel, i.address) for i in shown] == [("telegram", TELEGRAM_CHAT)]
        assert reveal_identity(s, staff["admin"], names["c"], reason="例行抽查核实") == []
        s.commit()
        entries = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(e.action, e.staff_id, e.reason) for e in entries] == [
            ("reveal_identity", staff["admin"].staff_id, "涉嫌诬告，需联系核实"),
            ("reveal_identity", staff["admin"].staff_id, "例行抽查核实"),
        ]
        assert entries[0].data == {"pseudonym": names["a"], "channels": ["telegram"]}
        assert TELEGRAM_CHAT not in str(entries[0].data)


# --- the page ------------------------------------------------------------------------------


def test_reporters_page(world, client):
    _, _, names = world
    token = sign_in(client, "g1sup")
    page = client.get("/admin/reporters")
    assert page.status_code == 200
    assert names["a"] in page.text and names["b"] not in page.text
    assert TELEGRAM_CHAT not in page.text
    assert client.get(f"/admin/reporters/{names['a']}/reveal").status_code == 404
    refused = client.post(
        f"/admin/reporters/{names['a']}/reveal", data={"reason": "想看看", "csrf_token": token}
    )
    assert refused.status_code == 404
    assert (
        client.post(
            f"/admin/reporters/{names['b']}/status",
            data={"action": "ban", "reason": "不认识", "csrf_token": token},
        ).status_code
        == 404
    )


def test_grid_workers_have_no_reporters_page(world, client):
    sign_in(client, "g1")
    assert client.get("/admin/reporters").status_code == 404


def test_status_change_needs_csrf(world, client, seeded):
    _, _, names = world
    token = sign_in(client, "city")
    url = f"/admin/reporters/{names['a']}/status"
    assert client.post(url, data={"action": "ban", "reason": "刷积分"}).status_code == 403
    assert client.get(url).status_code == 405
    with seeded() as s:
        assert s.scalar(select(Reporter.status).where(Reporter.pseudonym == names["a"])) == (
            "active"
        )
    done = client.post(url, data={"action": "ban", "reason": "刷积分", "csrf_token": token})
    assert done.status_code == 303
    with seeded() as s:
        assert s.scalar(select(Reporter.status).where(Reporter.pseudonym == names["a"])) == (
            "banned"
        )


def test_admin_reveals_with_a_reason(world, client, seeded):
    _, _, names = world
    token = sign_in(client, "admin")
    url = f"/admin/reporters/{names['a']}/reveal"
    form = client.get(url)
    assert form.status_code == 200 and TELEGRAM_CHAT not in form.text
    assert client.post(url, data={"reason": "涉嫌诬告需核实"}).status_code == 403  # no CSRF
    empty = client.post(url, data={"reason": "", "csrf_token": token})
    assert empty.status_code == 422 and TELEGRAM_CHAT not in empty.text
    shown = client.post(url, data={"reason": "涉嫌诬告需核实", "csrf_token": csrf_of(form.text)})
    assert shown.status_code == 200 and TELEGRAM_CHAT in shown.text
    assert shown.headers["Cache-Control"] == "no-store"
    with seeded() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "reveal_identity"))
        assert entry.reason == "涉嫌诬告需核实"
