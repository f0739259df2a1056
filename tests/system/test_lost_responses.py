"""Lost responses (issue 9 item 2): answers dropped, uploads reset, answers late; retries land once.

A loopback proxy (proxy.py) sits between the client and gunicorn. The client
keeps one Idempotency-Key per tip and retries until it holds an answer, as the
mobile form does; afterwards each key has exactly one tip, and every answer for
a key carries the same reference.
"""

from __future__ import annotations

import random
import threading
import uuid

import pytest

from tests.system import canaries, tally
from tests.system.harness import (
    RETRYABLE,
    noise_jpeg,
    post_tip,
    submit_until_acknowledged,
    tip_by_description,
)
from tests.system.proxy import Proxy


@pytest.fixture
def proxy(web_server):
    with Proxy(web_server.port) as p:
        yield p


def _exactly_once(system_env, web_server, fields, photos, key, body) -> None:
    """One tip for the key, the one the client holds; a later replay says the same."""
    stored = tip_by_description(system_env, fields["description"])
    assert [t["ref"] for t in stored] == [body["ref"]]
    assert len(stored[0]["photos"]) == len(photos)
    status, replay, _ = post_tip(web_server.url(), fields=fields, photos=photos, key=key)
    assert (status, replay["ref"]) == (201, body["ref"])
    tally.add("tips acknowledged")


def test_dropped_answer_then_retry(system_env, web_server, proxy):
    for photos in ([], [noise_jpeg()]):
        fields, key = canaries.tip_fields(), str(uuid.uuid4())
        proxy.plan("drop_response")
        with pytest.raises(RETRYABLE):
            post_tip(proxy.url(), fields=fields, photos=photos, key=key)
        # The server did the work; the client does not know it.
        assert len(tip_by_description(system_env, fields["description"])) == 1
        body, tries = submit_until_acknowledged(proxy.url(), fields=fields, photos=photos, key=key)
        assert tries == 1
        _exactly_once(system_env, web_server, fields, photos, key, body)
    assert proxy.seen["drop_response"] == 2


def test_upload_reset_midway_stores_nothing_then_retry(system_env, web_server, proxy):
    fields, key = canaries.tip_fields(), str(uuid.uuid4())
    photos = [noise_jpeg(640, 480)]  # ~250 KB: the reset comes long before the end
    proxy.plan("reset_upload")
    with pytest.raises(RETRYABLE):
        post_tip(proxy.url(), fields=fields, photos=photos, key=key)
    assert tip_by_description(system_env, fields["description"]) == []
    body, _ = submit_until_acknowledged(proxy.url(), fields=fields, photos=photos, key=key)
    _exactly_once(system_env, web_server, fields, photos, key, body)
    assert system_env.temp_files() == []


def test_late_answer_client_gives_up_and_retries(system_env, web_server, proxy):
    fields, photos, key = canaries.tip_fields(), [noise_jpeg()], str(uuid.uuid4())
    proxy.plan(("latency", 1.5))
    with pytest.raises(RETRYABLE):
        post_tip(proxy.url(), fields=fields, photos=photos, key=key, timeout=0.5)
    # The retry may overtake the first request still in flight: the key serialises them.
    body, _ = submit_until_acknowledged(proxy.url(), fields=fields, photos=photos, key=key)
    _exactly_once(system_env, web_server, fields, photos, key, body)


def test_mixed_faults_from_parallel_clients(system_env, web_server, proxy):
    """Three phones, twelve tips, a random fault before most first answers: each lands once."""
    rng = random.Random(9)
    modes = ["drop_response", "reset_upload", ("latency", 0.3), "pass"]
    tips = [
        (canaries.tip_fields(), [noise_jpeg()] if i % 2 else [], str(uuid.uuid4()))
        for i in range(12)
    ]
    proxy.plan(*(rng.choice(modes) for _ in range(18)))
    results, errors = {}, []

    def phone(batch):
        try:
            for fields, photos, key in batch:
                results[key] = submit_until_acknowledged(
                    proxy.url(), fields=fields, photos=photos, key=key, attempts=30
                )[0]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=phone, args=(tips[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for fields, photos, key in tips:
        _exactly_once(system_env, web_server, fields, photos, key, results[key])
