"""Crash injection in the web tier (QUALITY 12, 32; issue 9 item 1): SIGKILL at chosen points.

The worker dies after a photo is written and before its row commits, after the
commit and before the response, or the whole gunicorn dies in a burst; the
client retries with the same Idempotency-Key. Afterwards every acknowledged tip
is present exactly once, and after the sweeper no file lacks a row and no row
lacks a file.
"""

from __future__ import annotations

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


@pytest.fixture
def web(web_server):
    yield web_server
    if not web_server.alive():  # a failed test must not leave it dead for the next ones
        web_server.start()


def _crash(system_env, web, point: str, fields: dict, photos, key: str) -> None:
    """Arm the point, send the tip, and see the worker die without answering."""
    system_env.arm_fault(point)
    with pytest.raises(RETRYABLE):
        post_tip(web.url(), fields=fields, photos=photos, key=key, timeout=20)
    assert system_env.fault_fired(point)
    tally.add("crashes injected")


def _acknowledged_once(system_env, fields: dict, body: dict) -> dict:
    """The tip the client holds is stored exactly once, with its photo files on disk."""
    stored = tip_by_description(system_env, fields["description"])
    assert [t["ref"] for t in stored] == [body["ref"]]
    tally.add("tips acknowledged")
    files = system_env.media_files()
    for keys in stored[0]["photos"]:
        assert set(keys) <= files
    return stored[0]


def test_killed_after_photo_write_then_retried_and_abandoned(system_env, web):
    kept, lost = canaries.tip_fields(), canaries.tip_fields()
    kept_photo, lost_photo = noise_jpeg(), noise_jpeg()
    kept_key = str(uuid.uuid4())
    _crash(system_env, web, "photo_written", kept, [kept_photo], kept_key)
    _crash(system_env, web, "photo_written", lost, [lost_photo], str(uuid.uuid4()))
    # Two files on disk with no row: the crashes came between the write and the commit.
    orphans, missing = system_env.files_and_rows_agree()
    assert len(orphans) >= 2 and not missing
    assert tip_by_description(system_env, kept["description"]) == []

    body, _ = submit_until_acknowledged(web.url(), fields=kept, photos=[kept_photo], key=kept_key)
    tip = _acknowledged_once(system_env, kept, body)
    assert len(tip["photos"]) == 1 and len(body["photos"]) == 1

    # The reporter of the other tip gave up: the sweeper removes its file, keeps the rest.
    assert "removed" in system_env.sweep()
    assert system_env.files_and_rows_agree() == (set(), set())
    assert set(tip["photos"][0]) <= system_env.media_files()
    assert system_env.temp_files() == []


def test_killed_after_commit_then_retried(system_env, web):
    fields, photo, key = canaries.tip_fields(), noise_jpeg(), str(uuid.uuid4())
    _crash(system_env, web, "request_committed", fields, [photo], key)
    # The tip was committed though its reporter never heard: the retry gets it, not a twin.
    first = tip_by_description(system_env, fields["description"])
    assert len(first) == 1
    body, _ = submit_until_acknowledged(web.url(), fields=fields, photos=[photo], key=key)
    assert body["ref"] == first[0]["ref"]
    _acknowledged_once(system_env, fields, body)
    again, _ = submit_until_acknowledged(web.url(), fields=fields, photos=[photo], key=key)
    assert again == body


def test_whole_server_killed_mid_burst(system_env, web):
    """SIGKILL gunicorn (master and workers) while 4 clients send; restart; retries land once."""
    tips = [(canaries.tip_fields(), [noise_jpeg()], str(uuid.uuid4())) for _ in range(16)]
    results: dict[str, dict] = {}
    errors: list[BaseException] = []
    halfway = threading.Event()

    def client(batch):
        try:
            for fields, photos, key in batch:
                body, _ = submit_until_acknowledged(
                    web.url(), fields=fields, photos=photos, key=key, attempts=100, pause=0.1
                )
                results[key] = body
                if len(results) >= 4:
                    halfway.set()
        except BaseException as exc:  # reported below
            errors.append(exc)
            halfway.set()

    threads = [threading.Thread(target=client, args=(tips[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    assert halfway.wait(60)
    web.kill()  # mid-burst: some requests are in flight, some wait on the socket
    tally.add("crashes injected")
    web.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(results) == len(tips)
    for fields, _, key in tips:
        _acknowledged_once(system_env, fields, results[key])
    system_env.sweep()
    assert system_env.files_and_rows_agree() == (set(), set())
