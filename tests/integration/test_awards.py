"""Award runs, their exports and diffs; the leaderboard API, the admin pages and the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import func, select

from app.cli import Context, cli
from app.db import make_engine, make_session_factory, unit_of_work
from app.migrate import upgrade
from app.people.models import Organisation
from app.people.services import create_reporter, create_staff_user, issue_staff_token
from app.rewards.awards import get_run, run_awards, snapshot_hash, verify_run
from app.rewards.errors import InvalidPeriod
from app.rewards.export import export_csv, export_xlsx
from app.rewards.leaderboards import leaderboard
from app.rewards.models import AwardRun, PointEntry
from app.rewards.services import set_setting
from tests.extras import PASSWORD, add_staff, csrf_of, sign_in
from tests.integration.test_ledger import NOW, decide, make_tip

EVIL_ORG = '=HYPERLINK("http://x.example","click")'


@pytest.fixture
def activity(seeded):
    """November 2026: drivers, guards of two enterprises and a unit, with outcomes decided.

    Expected points: D1 40 (two confirmed, one urgent), D2 15, D3 15, D4 0 (unfounded);
    G1 (enterprise A) 30, G2 (enterprise B, evil name) 15, G3 (unit U) 15.
    """
    with unit_of_work(seeded) as s:
        a = create_staff_user(s, "award_a", "supervisor").id
        orgs = {}
        for name, kind in (
            ("甲化工厂", "enterprise"),
            (EVIL_ORG, "enterprise"),
            ("市一中", "unit"),
        ):
            org = Organisation(name=name, kind=kind)
            s.add(org)
            s.flush()
            orgs[name] = org.id
        people = {
            "D1": create_reporter(s, "taxi_driver").id,
            "D2": create_reporter(s, "taxi_driver").id,
            "D3": create_reporter(s, "taxi_driver").id,
            "D4": create_reporter(s, "taxi_driver").id,
            "G1": create_reporter(s, "enterprise_guard", organisation_id=orgs["甲化工厂"]).id,
            "G2": create_reporter(s, "enterprise_guard", organisation_id=orgs[EVIL_ORG]).id,
            "G3": create_reporter(s, "enterprise_guard", organisation_id=orgs["市一中"]).id,
        }
        plan = [
            ("D1", "urgent", "confirmed"),
            ("D1", "normal", "confirmed"),
            ("D2", "normal", "confirmed"),
            ("D3", "normal", "confirmed"),
            ("D4", "normal", "unfounded"),
            ("G1", "normal", "confirmed"),
            ("G1", "normal", "confirmed"),
            ("G2", "normal", "confirmed"),
            ("G3", "normal", "confirmed"),
        ]
        tips = {}
        for who, priority, outcome in plan:
            tip = make_tip(s, people[who], priority=priority)
            decide(s, tip.id, status="resolved", outcome=outcome, actor_id=a)
            tips.setdefault(who, []).append(tip.id)
        set_setting(s, "nominees_per_group", 2, actor_id=a)
    return {"staff": a, "people": people, "tips": tips, "orgs": orgs}


def _pseudonyms(seeded, people) -> dict[str, str]:
    from app.people.models import Reporter

    with seeded() as s:
        return {
            k: s.scalar(select(Reporter.pseudonym).where(Reporter.id == v))
            for k, v in people.items()
        }


def test_a_run_freezes_the_ranking_with_nominees_and_evidence(seeded, activity):
    names = _pseudonyms(seeded, activity["people"])
    with unit_of_work(seeded) as s:
        run = run_awards(s, "2026-11", actor_id=activity["staff"], now=NOW + dt.timedelta(days=20))
        run_id = run.id
    with seeded() as s:
        run = get_run(s, run_id)
        snap = run.snapshot
        assert verify_run(run) and run.sha256 == snapshot_hash(snap) and run.diff is None
        drivers = snap["individuals"]["taxi_driver"]
        assert [(r["pseudonym"], r["points"], r["rank"]) for r in drivers][:1] == [
            (names["D1"], 40, 1)
        ]
        # D2 and D3 tie for second: both are nominated, even with two places per group.
        assert sorted(snap["nominees"]["taxi_driver"]) == sorted(
            [names["D1"], names["D2"], names["D3"]]
        )
        assert [r["rank"] for r in drivers] == [1, 2, 2, 4]
        assert drivers[-1]["points"] == 0 and not drivers[-1].get("nominee")
        d1 = drivers[0]
        assert d1["confirmed_tips"] == 2
        assert {t["outcome"] for t in d1["evidence"]} == {"confirmed"}
        entry_ids = [e["id"] for t in d1["evidence"] for e in t["entries"]]
        assert (
            s.scalar(select(func.sum(PointEntry.points)).where(PointEntry.id.in_(entry_ids))) == 40
        )
        guards = snap["nominees"]["enterprise_guard"]
        assert guards[0] == names["G1"] and sorted(guards[1:]) == sorted([names["G2"], names["G3"]])
        assert snap["nominees"]["safe_enterprise"] == ["甲化工厂", EVIL_ORG]
        assert snap["nominees"]["safe_unit"] == ["市一中"]
        ent = snap["organisations"]["enterprise"][0]
        assert (ent["name"], ent["points"], ent["confirmed_tips"]) == ("甲化工厂", 30, 2)
        assert ent["evidence"] == [{"pseudonym": names["G1"], "points": 30, "confirmed_tips": 2}]
        assert snap["complete"] is True
    # A quarter and the year include November.
    with unit_of_work(seeded) as s:
        q4 = run_awards(s, "2026-q4", actor_id=None, now=NOW)
        assert q4.period == "2026-Q4" and q4.snapshot["complete"] is False
        assert q4.snapshot["individuals"]["taxi_driver"][0]["points"] == 40
        assert run_awards(s, "2026", actor_id=None, now=NOW).snapshot["nominees"] == {
            **snap["nominees"]
        }
        with pytest.raises(InvalidPeriod):
            run_awards(s, "2026-Q5", actor_id=None)


def test_exports_match_the_ranking_and_defuse_formulas(seeded, activity):
    names = _pseudonyms(seeded, activity["people"])
    with unit_of_work(seeded) as s:
        run = run_awards(s, "2026-11", actor_id=None, now=NOW)
    book = load_workbook(io.BytesIO(export_xlsx(run).content))
    sheet = book.worksheets[0]
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0] == [
        "评选类别",
        "分组",
        "名次",
        "名称/代号",
        "所属单位",
        "积分",
        "核实线索数",
        "候选",
    ]
    drivers = [r for r in rows[1:] if r[1] == "出租车司机"]
    expected = run.snapshot["individuals"]["taxi_driver"]
    assert [(r[2], r[3], r[5], r[6]) for r in drivers] == [
        (e["rank"], e["pseudonym"], e["points"], e["confirmed_tips"]) for e in expected
    ]
    assert drivers[0][3] == names["D1"] and drivers[0][5] == 40 and drivers[0][7] == "是"
    for ws in book.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f"
                assert not (isinstance(cell.value, str) and cell.value.startswith("="))
    assert "'" + EVIL_ORG in [r[3] for r in rows]
    about = {r[0].value: r[1].value for r in book.worksheets[1].iter_rows()}
    assert about["快照 SHA-256"] == run.sha256

    english = list(csv.reader(io.StringIO(export_csv(run, "en").content.decode("utf-8-sig"))))
    assert english[0][:3] == ["Award", "Group", "Rank"]
    chinese = export_csv(run).content
    assert chinese.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(chinese.decode("utf-8-sig"))))
    assert len(table) == len(rows)
    assert all(not cell.startswith(("=", "+", "@")) for row in table for cell in row)


def test_a_later_reversal_shows_as_a_difference_on_the_next_run(seeded, activity):
    names = _pseudonyms(seeded, activity["people"])
    with unit_of_work(seeded) as s:
        first = run_awards(s, "2026-11", actor_id=None, now=NOW + dt.timedelta(days=20))
        first_id, first_hash = first.id, first.sha256
    # December: D1's urgent tip turns out unfounded. The reversal lands in November's period.
    with unit_of_work(seeded) as s:
        decide(
            s,
            activity["tips"]["D1"][0],
            status="resolved",
            outcome="unfounded",
            actor_id=activity["staff"],
            now=NOW + dt.timedelta(days=25),
        )
    with unit_of_work(seeded) as s:
        second = run_awards(s, "2026-11", actor_id=None, now=NOW + dt.timedelta(days=26))
        second_id = second.id
    with seeded() as s:
        again = get_run(s, first_id)
        assert again.sha256 == first_hash and verify_run(again)  # the first run is untouched
        second = get_run(s, second_id)
        assert (second.run_no, second.previous_id) == (2, first_id)
        diff = second.diff
        assert diff["from_run"] == 1 and diff["from_sha256"] == first_hash
        d1 = next(c for c in diff["changes"] if c["name"] == names["D1"])
        assert d1["before"] == {"rank": 1, "points": 40, "confirmed_tips": 2}
        assert d1["after"] == {"rank": 1, "points": 15, "confirmed_tips": 1}
        assert s.scalar(select(func.count()).select_from(AwardRun)) == 2


def test_leaderboards_by_role_organisation_town_and_scope(seeded, activity, client):
    names = _pseudonyms(seeded, activity["people"])
    with unit_of_work(seeded) as s:
        board = leaderboard(s, "2026-11", role="enterprise_guard")
        assert board["rows"][0]["name"] == names["G1"]
        orgs = leaderboard(s, "2026-11", by="organisation")
        top = orgs["rows"][0]
        assert (top["name"], top["points"], top["members"]) == (
            "甲化工厂",
            30,
            1,
        )
        towns = leaderboard(s, "2026-11", by="town")
        assert towns["rows"] == [
            {"id": "T1", "name": "测试区", "points": 130, "confirmed_tips": 8, "rank": 1}
        ]
        assert leaderboard(s, "2026-11", town="T1")["total"] == 7
        assert leaderboard(s, "2026-11", town="T9")["total"] == 0
        only_a = leaderboard(s, "2026-11", organisation_id=activity["orgs"]["甲化工厂"])
        assert [r["name"] for r in only_a["rows"]] == [names["G1"]]
        admin_token = issue_staff_token(s, create_staff_user(s, "lb_admin", "admin").username)
        worker_token = issue_staff_token(
            s, create_staff_user(s, "lb_g4", "grid_worker", grids=["G4"]).username
        )
    resp = client.get(
        "/api/v1/staff/leaderboard?period=2026-11&role=taxi_driver",
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert resp.status_code == 200, resp.json
    first = resp.json["rows"][0]
    assert (first["name"], first["points"]) == (names["D1"], 40)
    # A grid worker of G4 sees only points for tips in G4: none here.
    scoped = client.get(
        "/api/v1/staff/leaderboard?period=2026-11",
        headers={"Authorization": f"Bearer {worker_token}"},
    )
    assert scoped.status_code == 200 and scoped.json["rows"] == []
    assert client.get("/api/v1/staff/leaderboard").status_code == 401
    bad = client.get(
        "/api/v1/staff/leaderboard?period=11-2026",
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert bad.status_code == 422 and bad.json["code"] == "invalid_period"
    assert "/api/v1/staff/leaderboard" in client.get("/api/v1/openapi.json").json["paths"]


def test_admin_pages_run_diff_download_and_edit_rules(seeded, activity, client):
    with unit_of_work(seeded) as s:
        add_staff(s, "rw_admin", "admin", password=PASSWORD)
        add_staff(s, "rw_town", "supervisor", ("T1",), password=PASSWORD)
    csrf = sign_in(client, "rw_admin")
    page = client.get("/admin/rewards?period=2026-11")
    assert page.status_code == 200 and "甲化工厂" in page.text
    assert client.get("/admin/rewards?period=2026-11&by=organisation").status_code == 200
    assert client.get("/admin/rewards?period=2026-11&by=town").status_code == 200
    assert (
        client.post("/admin/rewards/runs", data={"period": "2026-11"}).status_code == 403
    )  # no CSRF
    resp = client.post("/admin/rewards/runs", data={"period": "2026-11", "csrf_token": csrf})
    assert resp.status_code == 303
    detail = client.get(resp.headers["Location"])
    assert detail.status_code == 200 and "甲化工厂" in detail.text
    run_id = int(resp.headers["Location"].rstrip("/").split("/")[-1])
    xlsx = client.get(f"/admin/rewards/runs/{run_id}/export.xlsx")
    assert xlsx.status_code == 200 and xlsx.headers["Content-Type"].startswith(
        "application/vnd.openxmlformats"
    )
    assert load_workbook(io.BytesIO(xlsx.data)).worksheets[0]["A1"].value == "评选类别"
    english = client.get(f"/admin/rewards/runs/{run_id}/export.csv?lang=en")
    assert english.status_code == 200 and english.data.decode("utf-8-sig").startswith("Award,")
    assert client.get(f"/admin/rewards/runs/{run_id}/export.pdf").status_code == 404
    again = client.post("/admin/rewards/runs", data={"period": "2026-11", "csrf_token": csrf})
    assert 'id="diff"' in client.get(again.headers["Location"]).text
    assert client.get("/admin/rewards/runs").status_code == 200

    rules = client.get("/admin/rewards/rules")
    assert rules.status_code == 200 and 'name="points_tip_confirmed"' in rules.text
    form = {"csrf_token": csrf_of(rules.text)}
    for line in rules.text.splitlines():
        if 'name="points_' in line or 'name="setting_' in line:
            name = line.split('name="')[1].split('"')[0]
            form[name] = line.split('value="')[1].split('"')[0]
        if 'name="active_' in line and "checked" in line:
            form[line.split('name="')[1].split('"')[0]] = "1"
    form["points_tip_confirmed"] = "12"
    assert client.post("/admin/rewards/rules", data=form).status_code == 303
    assert 'name="points_tip_confirmed" value="12"' in client.get("/admin/rewards/rules").text
    form["points_tip_confirmed"] = "99999"
    assert client.post("/admin/rewards/rules", data=form).status_code == 422

    # A town supervisor sees the scoped leaderboard but not the city-wide runs.
    client.post("/admin/logout", data={"csrf_token": csrf})
    form["csrf_token"] = sign_in(client, "rw_town")
    assert client.get("/admin/rewards?period=2026-11").status_code == 200
    assert client.get(f"/admin/rewards/runs/{run_id}").status_code == 404
    assert client.get(f"/admin/rewards/runs/{run_id}/export.csv").status_code == 404
    assert client.post("/admin/rewards/rules", data=form).status_code == 403


def test_admin_second_approval_flow(seeded, activity, client):
    with unit_of_work(seeded) as s:
        asker, _ = add_staff(s, "rw_asker", "supervisor", password=PASSWORD)
        add_staff(s, "rw_checker", "admin", password=PASSWORD)
        reporter = activity["people"]["D4"]
        tip_id = make_tip(s, reporter).id
        decide(s, tip_id, status="rejected", outcome="malicious", actor_id=asker.id)
    csrf = sign_in(client, "rw_asker")
    page = client.get("/admin/rewards/approvals")
    assert page.status_code == 200 and "rewards/approvals/" not in page.text  # cannot approve own
    client.post("/admin/logout", data={"csrf_token": csrf})
    csrf = sign_in(client, "rw_checker")
    page = client.get("/admin/rewards/approvals")
    request_id = int(page.text.split("/admin/rewards/approvals/")[1].split('"')[0])
    resp = client.post(
        f"/admin/rewards/approvals/{request_id}", data={"decision": "approve", "csrf_token": csrf}
    )
    assert resp.status_code == 303
    with seeded() as s:
        assert (
            s.scalar(select(func.sum(PointEntry.points)).where(PointEntry.reporter_id == reporter))
            == -20
        )
    again = client.post(
        f"/admin/rewards/approvals/{request_id}", data={"decision": "approve", "csrf_token": csrf}
    )
    assert again.status_code == 409


def test_cli_awards_run(db_url, tmp_path):
    env = {
        "DATABASE_URL": db_url,
        "TIPLINE_SECRET_KEY": "cli-test-key",
        "TIPLINE_MEDIA_DIR": str(tmp_path / "media"),
    }
    engine = make_engine(db_url)
    upgrade(engine, "head")
    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:
        from app.reports.categories import seed_categories

        seed_categories(s)
        staff = create_staff_user(s, "cli_a", "supervisor").id
        reporter = create_reporter(s, "volunteer").id
        decide(
            s,
            make_tip(s, reporter, grid_path=None).id,
            status="resolved",
            outcome="confirmed",
            actor_id=staff,
        )
    runner = CliRunner()
    first = runner.invoke(cli, ["awards", "run", "2026-11"], obj=Context(), env=env)
    assert first.exit_code == 0, first.output
    assert "award run 1 for 2026-11" in first.output and "volunteer: R-" in first.output
    second = runner.invoke(cli, ["awards", "run", "2026-11"], obj=Context(), env=env)
    assert "award run 2" in second.output and "changes since run 1: 0" in second.output
    bad = runner.invoke(cli, ["awards", "run", "last-year"], obj=Context(), env=env)
    assert bad.exit_code == 2 and "YYYY" in bad.output
    engine.dispose()
