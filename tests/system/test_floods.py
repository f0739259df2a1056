"""Floods against the running system (QUALITY 22, 27, 28; issue 9 item 5).

- 100 parallel wrong-password sign-ins for 3 accounts while 3 other staff sign in:
  they get in; the attacked accounts stay throttled even with the right password.
- 100 tips at once from one reporter through 2 workers: 429 after the documented
  10 a minute, with Retry-After, counted once across the workers (Redis).
- A duplicate storm: every tip sent 2-4 times at once, some copies with a changed
  payload: one tip per key, every copy of the winner answered with it, the others 422.
"""

from __future__ import annotations

import http.client
import itertools
import random
import re
import secrets
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.config import load_settings
from app.people.services import create_reporter, create_staff_user, issue_reporter_token
from tests.system import canaries, tally
from tests.system.harness import WebServer, post_tip, tip_by_description

ATTACKER = "127.0.0.50"  # Linux answers on all of 127/8: each client gets its own address
SIGN_IN_ATTEMPTS = 100
USER_ATTEMPTS_PER_MINUTE = 5  # app/staff/signin.py USER_ATTEMPTS
TIPS_PER_MINUTE = 10  # Settings.tips_per_minute, documented in app/reports/abuse.py


@pytest.fixture(scope="module")
def web(system_env):
    with WebServer(system_env, workers=2) as server:
        yield server


def _sign_in(web, username: str, password: str, *, source: str) -> tuple[int, str, dict]:
    """POST the admin sign-in form from a given loopback address, as a browser would."""
    csrf = secrets.token_urlsafe(32)
    canaries.plant("login csrf token", csrf)
    body = urllib.parse.urlencode(
        {"username": username, "password": password, "csrf_token": csrf}
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=60, source_address=(source, 0))
    try:
        conn.request(
            "POST",
            "/admin/login",
            body=body,
            headers={
                **canaries.CLIENT_HEADERS,
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"tipline_login={csrf}",
            },
        )
        response = conn.getresponse()
        text = response.read().decode()
        headers = {k.lower(): v for k, v in response.getheaders()}
        headers["set-cookie"] = "\n".join(response.msg.get_all("Set-Cookie") or [])
    finally:
        conn.close()
    match = re.search(r"tipline_admin=([^;]+)", headers.get("set-cookie", ""))
    if match:
        canaries.plant("staff session cookie", match.group(1))
    return response.status, text.replace(csrf, "<csrf>"), headers


def _make_staff(system_env, names: list[str]) -> dict[str, str]:
    """Create supervisors with random passwords; return username -> password."""
    passwords = {name: secrets.token_urlsafe(18) for name in names}
    with system_env.session() as session:
        for name, password in passwords.items():
            canaries.plant("staff password", password)
            create_staff_user(session, name, "supervisor", password=password)
        session.commit()
    return passwords


def test_sign_in_flood_throttles_the_attacked_accounts_only(system_env, web):
    run = secrets.token_hex(3)
    victims = [f"victim-{run}-{i}" for i in range(3)]
    users = [f"staff-{run}-{i}" for i in range(3)]
    quiet, ghost = f"quiet-{run}", f"ghost-{run}"
    passwords = _make_staff(system_env, [*victims, *users, quiet])
    pids = web.worker_pids()

    attempts = [
        ("flood", victim, secrets.token_urlsafe(12), ATTACKER)
        for victim, _ in zip(itertools.cycle(victims), range(SIGN_IN_ATTEMPTS), strict=False)
    ]
    # The real users sign in from their own addresses while the flood is under way.
    for i, user in enumerate(users):
        attempts.insert(20 + 25 * i, ("user", user, passwords[user], f"127.0.0.{2 + i}"))
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(
            pool.map(lambda a: (a[0], a[1], _sign_in(web, a[1], a[2], source=a[3])), attempts)
        )

    flood = Counter(status for kind, _, (status, _, _) in results if kind == "flood")
    assert set(flood) <= {401, 429}, flood
    assert flood[401] <= USER_ATTEMPTS_PER_MINUTE * len(victims), flood  # throttled before hashing
    assert flood[429] >= SIGN_IN_ATTEMPTS - USER_ATTEMPTS_PER_MINUTE * len(victims), flood
    for _, _, (status, _, headers) in results:
        if status == 429:
            assert 0 < int(headers["retry-after"]) <= 60
    for kind, user, (status, _, headers) in results:
        if kind == "user":
            assert status == 303, (user, status)
            assert "tipline_admin=" in headers["set-cookie"]

    # The right password does not open an attacked account now, from any address.
    for victim in victims:
        status, _, headers = _sign_in(web, victim, passwords[victim], source="127.0.0.60")
        assert status == 429
        assert "tipline_admin=" not in headers.get("set-cookie", "")

    # An unknown user and a wrong password get the same answer.
    wrong = _sign_in(web, quiet, "not-the-password", source="127.0.0.61")
    unknown = _sign_in(web, ghost, "not-the-password", source="127.0.0.62")
    assert wrong[0] == unknown[0] == 401
    assert wrong[1].replace(quiet, "<user>") == unknown[1].replace(ghost, "<user>")
    assert web.worker_pids() == pids
    tally.add("sign-in attempts flooded", SIGN_IN_ATTEMPTS)


def test_tip_flood_from_one_reporter_is_limited_across_workers(system_env, web):
    redis_url = system_env.env.get("REDIS_URL")
    if not redis_url:
        pytest.skip("the shared rate limit needs Redis (TEST_REDIS_URL; CI runs one)")
    import redis

    with system_env.session() as session:
        reporter = create_reporter(session, "taxi_driver")
        reporter_id, token = reporter.id, issue_reporter_token(session, reporter.id)
        session.commit()
    canaries.plant("reporter token", token)
    store = redis.Redis.from_url(redis_url)
    counter = f"{load_settings(system_env.env).redis_prefix}rl:tips:reporter:{reporter_id}"
    store.delete(counter + ":m", counter + ":h")  # a reporter of an earlier run had this id

    tips = [(canaries.tip_fields(), str(uuid.uuid4())) for _ in range(100)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(
            pool.map(lambda t: post_tip(web.url(), fields=t[0], key=t[1], token=token), tips)
        )

    statuses = Counter(status for status, _, _ in answers)
    assert statuses == {201: TIPS_PER_MINUTE, 429: 100 - TIPS_PER_MINUTE}, statuses
    for status, body, headers in answers:
        if status == 429:
            assert body["code"] == "rate_limited"
            assert 0 < int(headers["retry-after"]) <= 60
    assert store.zcard(counter + ":m") == TIPS_PER_MINUTE  # one count, shared by both workers
    accepted = [(t, a) for t, a in zip(tips, answers, strict=True) if a[0] == 201]
    for (fields, _), (_, body, _) in zip(tips, answers, strict=True):
        stored = [t["ref"] for t in tip_by_description(system_env, fields["description"])]
        assert stored == ([body["ref"]] if "ref" in body else [])
    # Over the limit, a retry of an acknowledged tip still gets its original answer.
    (fields, key), (_, body, _) = accepted[0]
    status, replay, headers = post_tip(web.url(), fields=fields, key=key, token=token)
    assert (status, replay["ref"], headers.get("idempotent-replayed")) == (201, body["ref"], "true")
    assert system_env.scalar(
        "SELECT count(*) FROM tips WHERE reporter_id = :r", r=reporter_id
    ) == len(accepted)
    tally.add("tips acknowledged", len(accepted))
    tally.add("tips refused over the rate limit", statuses[429])


def test_duplicate_storm_stores_one_tip_per_key(system_env, web):
    rng = random.Random(9)
    sends = []  # (key, variant, fields)
    variants = {}
    for n in range(30):
        key = str(uuid.uuid4())
        original = canaries.tip_fields()
        changed = {**original, "description": original["description"] + " (edited)"}
        variants[key] = {"original": original, "changed": changed}
        copies = ["original"] * (1 + rng.randint(1, 3))
        if n % 3 == 0:
            copies[rng.randrange(1, len(copies))] = "changed"
        sends += [(key, variant) for variant in copies]
    rng.shuffle(sends)

    def send(item):
        key, variant = item
        return key, variant, post_tip(web.url(), fields=variants[key][variant], key=key)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, sends))

    assert {status for _, _, (status, _, _) in results} <= {201, 422}
    for key, both in variants.items():
        stored = {
            variant: tip_by_description(system_env, fields["description"])
            for variant, fields in both.items()
        }
        winners = [variant for variant, tips in stored.items() if tips]
        assert len(winners) == 1 and len(stored[winners[0]]) == 1, (key, stored)
        ref = stored[winners[0]][0]["ref"]
        for k, variant, (status, body, _) in results:
            if k != key:
                continue
            if variant == winners[0]:
                assert (status, body["ref"]) == (201, ref)
            else:
                assert (status, body["code"]) == (422, "idempotency_key_reused")
    tally.add("tips acknowledged", len(variants))
    tally.add("duplicate requests sent", len(sends))
