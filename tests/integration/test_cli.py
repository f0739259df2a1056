"""The `tipline` command line against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from app.cli import Context, cli
from app.db import make_engine, make_session_factory
from app.grids.models import Grid, GridLayer
from app.people.models import Invite, StaffUser
from app.reports.models import Category
from tests.layers import small_layer


@pytest.fixture
def run(db_url, tmp_path):
    """Invoke `tipline ...` with the test database in the environment."""
    env = {
        "DATABASE_URL": db_url,
        "TIPLINE_SECRET_KEY": "cli-test-key",
        "TIPLINE_MEDIA_DIR": str(tmp_path / "media"),
    }

    def invoke(*args: str, input: str | None = None):
        result = CliRunner().invoke(cli, list(args), obj=Context(), env=env, input=input)
        return result

    return invoke


@pytest.fixture
def factory(db_url):
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def scalar(factory, stmt):
    with factory() as s:
        return s.scalar(stmt)


def test_upgrade_seed_and_seed_again(run, factory):
    assert run("db", "upgrade").exit_code == 0
    first = run("demo", "seed")
    assert first.exit_code == 0, first.output
    assert "invites (taxi_driver" in first.output
    grids = scalar(factory, select(func.count()).select_from(Grid).where(Grid.level == "grid"))
    assert grids == 888
    towns = scalar(factory, select(func.count()).select_from(Grid).where(Grid.level == "town"))
    assert towns >= 6
    assert scalar(factory, select(func.count()).select_from(Category)) == 11
    assert scalar(factory, select(GridLayer.synthetic)) is True
    again = run("demo", "seed")
    assert again.exit_code == 0 and "already seeded" in again.output
    assert (
        scalar(factory, select(func.count()).select_from(Grid).where(Grid.level == "grid")) == 888
    )
    assert scalar(factory, select(func.count()).select_from(Invite)) == 9


def test_users_invites_and_tokens(run, factory):
    run("db", "upgrade")
    made = run(
        "users",
        "create",
        "wang",
        "--role",
        "grid_worker",
        "--grid",
        "G1",
        "--password-stdin",
        input="a long pass phrase with 中文 in it\n",
    )
    assert made.exit_code == 0, made.output
    assert (
        scalar(factory, select(StaffUser.role).where(StaffUser.username == "wang")) == "grid_worker"
    )
    dup = run("users", "create", "wang", "--role", "admin")
    assert dup.exit_code == 2 and "exists" in dup.output
    token = run("users", "token", "wang")
    assert token.exit_code == 0 and token.output.startswith("tps_")
    assert run("users", "token", "nobody").exit_code == 2
    codes = run("invites", "create", "--role", "taxi_driver", "--org", "金桥出租", "--count", "3")
    assert codes.exit_code == 0 and len(codes.output.split()) == 3


def test_grids_import_reports_problems_and_replaces(run, factory, tmp_path):
    run("db", "upgrade")
    good = tmp_path / "grids.geojson"
    good.write_text(json.dumps(small_layer()), encoding="utf-8")
    first = run("grids", "import", str(good))
    assert first.exit_code == 0, first.output
    again = run("grids", "import", str(good))
    assert again.exit_code == 2 and "--replace" in again.output
    replaced = run("grids", "import", str(good), "--crs", "gcj02", "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert scalar(factory, select(GridLayer.crs).where(GridLayer.active.is_(True))) == "gcj02"
    broken = small_layer()
    broken["features"][-1]["properties"]["parent"] = "NOPE"
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps(broken), encoding="utf-8")
    refused = run("grids", "import", str(bad), "--replace")
    assert refused.exit_code == 2 and "NOPE" in refused.output
    junk = tmp_path / "junk.geojson"
    junk.write_text("{not json", encoding="utf-8")
    assert run("grids", "import", str(junk)).exit_code == 2


def test_downgrade_to_base(run):
    assert run("db", "upgrade").exit_code == 0
    assert run("db", "downgrade", "base").exit_code == 0


def test_reporter_token_for_a_pseudonym(run, factory):
    from app.people.services import create_reporter, reporter_for_token

    run("db", "upgrade")
    with factory() as s:
        pseudonym = create_reporter(s, "enterprise_guard").pseudonym
        s.commit()
    out = run("reporters", "token", pseudonym.lower())
    assert out.exit_code == 0 and out.output.startswith("tpr_")
    with factory() as s:
        assert reporter_for_token(s, out.output.strip()).pseudonym == pseudonym
    assert run("reporters", "token", "R-ZZZZ").exit_code == 2


def test_clock_run_once(run):
    run("db", "upgrade")
    out = run("clock", "run")
    assert out.exit_code == 0 and "escalated 0 tip(s)" in out.output
