"""Settings from the environment: the Redis key prefix and the partner limit."""

from __future__ import annotations

import re

import pytest

from app.config import DEFAULT_REDIS_PREFIX, Settings, load_settings

SECRET = "config-test-secret"
PROD = "postgresql://tipline:pw@db.internal:5432/tipline"


def prefix(tmp_path, database_url: str, secret: str = SECRET, **env) -> str:
    environ = {"DATABASE_URL": database_url, "TIPLINE_SECRET_KEY": secret, **env}
    return load_settings(environ, root=tmp_path).redis_prefix


def test_the_derived_prefix_is_short_and_names_nothing_of_the_database(tmp_path):
    derived = prefix(tmp_path, PROD)
    assert re.fullmatch(r"tipline:[0-9a-f]{12}:", derived)
    for part in ("db.internal", "5432", "tipline:pw", "pw@"):
        assert part not in derived.removeprefix("tipline:")


@pytest.mark.parametrize(
    "same_database",
    [
        "postgresql+psycopg://tipline:pw@db.internal:5432/tipline",  # another driver
        "postgresql://reader:other@db.internal:5432/tipline",  # another user and password
        "postgresql://tipline:pw@DB.internal/tipline",  # the default port, host's case
        "postgresql://tipline:pw@db.internal:5432/tipline?sslmode=require",
    ],
)
def test_every_process_of_one_deployment_gets_the_same_prefix(tmp_path, same_database):
    assert prefix(tmp_path, same_database) == prefix(tmp_path, PROD)


@pytest.mark.parametrize(
    "other_database",
    [
        "postgresql://tipline:pw@db.internal:5432/tipline_staging",
        "postgresql://tipline:pw@db2.internal:5432/tipline",
        "postgresql://tipline:pw@db.internal:5433/tipline",
        "sqlite:////srv/tipline/instance/tipline.db",
    ],
)
def test_another_database_gets_another_prefix(tmp_path, other_database):
    assert prefix(tmp_path, other_database) != prefix(tmp_path, PROD)


def test_another_secret_gets_another_prefix(tmp_path):
    assert prefix(tmp_path, PROD, secret="another") != prefix(tmp_path, PROD)


def test_two_sqlite_instances_on_one_host_get_their_own(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    environ = {"TIPLINE_SECRET_KEY": SECRET}  # the default database: instance/tipline.db
    assert (
        load_settings(environ, root=first).redis_prefix
        != load_settings(environ, root=second).redis_prefix
    )


def test_a_prefix_given_by_hand_wins_and_reads_as_a_namespace(tmp_path):
    assert prefix(tmp_path, PROD, TIPLINE_REDIS_PREFIX="staging") == "staging:"
    assert prefix(tmp_path, PROD, TIPLINE_REDIS_PREFIX="tl:prod:") == "tl:prod:"


def test_an_unparsable_url_still_gets_a_prefix_without_the_url(tmp_path):
    derived = prefix(tmp_path, "not a url secret-canary")
    assert re.fullmatch(r"tipline:[0-9a-f]{12}:", derived)


def test_settings_made_by_hand_use_the_plain_prefix(tmp_path):
    made = Settings(database_url=PROD, secret_key=SECRET, media_dir=tmp_path, instance_dir=tmp_path)
    assert made.redis_prefix == DEFAULT_REDIS_PREFIX == "tipline:"


def test_the_partner_limit_is_120_a_minute_unless_set(tmp_path):
    environ = {"TIPLINE_SECRET_KEY": SECRET}
    assert load_settings(environ, root=tmp_path).partner_tips_per_minute == 120
    environ["TIPLINE_PARTNER_TIPS_PER_MINUTE"] = "600"
    assert load_settings(environ, root=tmp_path).partner_tips_per_minute == 600
