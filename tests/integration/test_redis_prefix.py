"""Two Tiplines on one Redis keep their own counters and locks; one deployment shares them."""

from __future__ import annotations

import os
import uuid

import pytest

from app.locks import clock_lock
from app.partners.keys import create_partner
from app.ratelimit import make_limiter
from tests.layers import centre_of

REDIS_URL = os.environ.get("TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(
    not REDIS_URL, reason="Redis cases need TEST_REDIS_URL (CI sets it; see README)"
)


WIRED = (
    "counters must be per deployment: the web app's limiter uses Settings.redis_prefix "
    "(app/webapp.py: make_limiter(settings.redis_url, prefix=settings.redis_prefix))"
)


def fresh_prefix() -> str:
    """A deployment of its own: other runs of the suite share this Redis database."""
    return f"test:{uuid.uuid4().hex[:12]}:"


def test_limiters_count_per_prefix():
    ours, theirs = fresh_prefix(), fresh_prefix()
    first, second = make_limiter(REDIS_URL, prefix=ours), make_limiter(REDIS_URL, prefix=ours)
    other = make_limiter(REDIS_URL, prefix=theirs)
    assert [first.hit("tips:partner:1:m", 2, 60).allowed for _ in range(2)] == [True, True]
    assert not second.hit("tips:partner:1:m", 2, 60).allowed  # same deployment: shared
    assert other.hit("tips:partner:1:m", 2, 60).allowed  # partner #1 of another deployment


def test_clock_locks_are_per_prefix():
    ours, theirs = fresh_prefix(), fresh_prefix()
    holder = clock_lock(REDIS_URL, prefix=ours)
    token = holder.acquire_redis()
    assert token is not None and holder.key == f"{ours}lock:response-clock"
    try:
        assert clock_lock(REDIS_URL, prefix=ours).acquire_redis() is None  # one deployment
        other = clock_lock(REDIS_URL, prefix=theirs)
        other_token = other.acquire_redis()
        assert other_token is not None  # another deployment ticks its own clock
        other.release_redis(other_token)
    finally:
        holder.release_redis(token)


def test_two_apps_keep_their_counters_apart_and_one_app_shares_them(settings, engine, seeded):
    """Partner #1 of two deployments on one Redis: each has its own budget."""
    import redis

    from app import create_app

    with seeded() as s:
        partner, key = create_partner(s, settings, name="Alarm Co")
        s.commit()
        partner_id = partner.id
    ours, theirs = fresh_prefix(), fresh_prefix()
    base = settings.with_(redis_url=REDIS_URL, partner_tips_per_minute=2)
    apps = {
        "ours": create_app(base.with_(redis_prefix=ours)),
        "ours, another worker": create_app(base.with_(redis_prefix=ours)),
        "theirs": create_app(base.with_(redis_prefix=theirs)),
    }
    lat, lon = centre_of("G1")
    form = {"api_key": key, "service_code": "suspicious", "lat": str(lat), "long": str(lon)}
    form["description"] = "自行车被偷 bicycle stolen"

    def post(name: str) -> int:
        client = apps[name].test_client()
        return client.post("/open311/v2/requests.json", data=form).status_code

    try:
        assert [post("ours"), post("ours")] == [201, 201], WIRED
        assert post("theirs") == 201, WIRED
        assert post("ours, another worker") == 429
        store = redis.Redis.from_url(REDIS_URL)
        counter = f"rl:tips:partner:{partner_id}:m"
        assert store.zcard(ours + counter) == 2, WIRED
        assert store.zcard(theirs + counter) == 1
    finally:
        for application in apps.values():
            application.extensions["tipline"].engine.dispose()
