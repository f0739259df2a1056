"""`tipline partners create/revoke/list` on a real database: the printed key works, then 403."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app.cli import Context, cli
from app.config import Settings
from app.partners.models import Partner
from app.people.models import Organisation, Reporter

SECRET = "cli-test-key"


@pytest.fixture
def run(db_url, tmp_path, engine):
    """Invoke `tipline ...` with the test database (tables made by `engine`) in the environment."""
    env = {
        "DATABASE_URL": db_url,
        "TIPLINE_SECRET_KEY": SECRET,
        "TIPLINE_MEDIA_DIR": str(tmp_path / "media"),
    }
    return lambda *args: CliRunner().invoke(cli, list(args), obj=Context(), env=env)


@pytest.fixture
def cli_app(settings: Settings, engine, seeded):
    """The app with the CLI's secret key, so keys the CLI printed authenticate."""
    from app import create_app

    application = create_app(settings.with_(secret_key=SECRET))
    yield application
    application.extensions["tipline"].engine.dispose()


def test_create_prints_a_working_key_and_revoke_makes_it_403(run, cli_app, session_factory):
    created = run("partners", "create", "Alarm Co", "--org", "Alarm Co Ltd", "--grid", "C/T1")
    assert created.exit_code == 0, created.output
    key = created.output.strip()
    assert key.startswith("tpk_") and len(key) > 40
    client = cli_app.test_client()
    assert client.get("/open311/v2/services.json", query_string={"api_key": key}).status_code == 200
    with session_factory() as s:
        partner = s.scalar(select(Partner))
        assert partner.key_hash != key and key not in partner.key_hash
        assert key.startswith(partner.key_prefix)
        assert partner.grid_paths == ["C/T1"]
        org = s.get(Organisation, partner.organisation_id)
        assert org.name == "Alarm Co Ltd"
        reporter = s.get(Reporter, partner.reporter_id)
        assert (reporter.role, reporter.organisation_id) == ("enterprise_guard", org.id)
    listed = run("partners", "list")
    assert listed.exit_code == 0
    assert "Alarm Co\t" in listed.output and "active" in listed.output and key not in listed.output
    assert "\tAlarm Co Ltd\tC/T1\tactive\t" in listed.output  # organisation and grids named
    assert run("partners", "create", "Alarm Co").exit_code == 2  # the name is taken
    revoked = run("partners", "revoke", "Alarm Co")
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    resp = client.get("/open311/v2/services.json", query_string={"api_key": key})
    assert resp.status_code == 403 and resp.json[0]["code"] == 403
    assert "revoked" in run("partners", "list").output
    assert run("partners", "revoke", "Nobody").exit_code == 2
