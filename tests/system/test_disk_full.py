"""Disk full while writing a photo (QUALITY 33; issue 9 item 4): a retryable 503, nothing kept.

Two ways to make the write fail in a real worker: a tiny tmpfs as the media dir
(ENOSPC; needs root to mount), and RLIMIT_FSIZE on gunicorn (EFBIG; works anywhere,
and also hits the upload spool file Werkzeug writes for a large body). Either way the
reporter gets 503 `storage_unavailable` with Retry-After, no row and no temp file
stay behind, and the tip goes through when resent without the photo or once there
is room again.
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from PIL import Image

from tests.system import canaries, tally
from tests.system.harness import WebServer, post_tip, tip_by_description

# A noise photo uploaded at low quality: 215 KB on the wire (held in memory by Werkzeug,
# under its 500 KB spool threshold), but its re-encoded derivative is about 440 KB.
PHOTO_SIZE, PHOTO_QUALITY = (1200, 900), 20
TINY_FS = "256k"
FSIZE_LIMIT = 384 * 1024


def _noise_jpeg(size: tuple[int, int], quality: int) -> bytes:
    w, h = size
    buf = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(w * h * 3)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _assert_refused_for_storage(status: int, body: dict | None, head: dict) -> None:
    assert status == 503, (status, body)
    assert body["code"] == "storage_unavailable"
    assert int(head["retry-after"]) > 0


def _temp_files(media_dir: Path) -> set[str]:
    tmp = media_dir / "tmp"
    return {p.name for p in tmp.iterdir()} if tmp.exists() else set()


def _keys_on_disk(media_dir: Path) -> set[str]:
    return {str(p.relative_to(media_dir)) for p in media_dir.glob("??/??/*") if p.is_file()}


def _stored_once(system_env, fields: dict, body: dict) -> dict:
    stored = tip_by_description(system_env, fields["description"])
    assert [t["ref"] for t in stored] == [body["ref"]]
    tally.add("tips acknowledged")
    return stored[0]


@pytest.fixture
def tiny_media_dir(system_env):
    """A 256 KB tmpfs as the media dir; its files join the suite's media dir afterwards."""
    mnt = system_env.root / f"tiny-media-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TINY_FS},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
            "test_photo_write_over_file_size_limit covers the same failure with RLIMIT_FSIZE"
        )
    try:
        yield mnt
    finally:
        # Rows now point at files in the tmpfs: copy them where the suite's checks
        # (files and rows agree, the sweeper) look, then let the mount go.
        shutil.copytree(mnt, system_env.media_dir, dirs_exist_ok=True, ignore=lambda *_: ["tmp"])
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_refuses_with_503_and_keeps_nothing(system_env, tiny_media_dir):
    photo = _noise_jpeg(PHOTO_SIZE, PHOTO_QUALITY)
    fields, key = canaries.tip_fields(), str(uuid.uuid4())
    with WebServer(system_env, extra_env={"TIPLINE_MEDIA_DIR": str(tiny_media_dir)}) as web:
        pids = web.worker_pids()
        status, body, head = post_tip(web.url(), fields=fields, photos=[photo], key=key)
        _assert_refused_for_storage(status, body, head)
        assert tip_by_description(system_env, fields["description"]) == []
        assert _temp_files(tiny_media_dir) == set()
        assert _keys_on_disk(tiny_media_dir) == set()  # the small thumbnail is not left either

        # The reporter still holds the tip: sent without the photo (a new request, so a
        # new key), it is taken at once.
        status, text_only, _ = post_tip(web.url(), fields=fields, key=str(uuid.uuid4()))
        assert status == 201, text_only
        assert _stored_once(system_env, fields, text_only)["photos"] == []

        # Room again: the same request (same key) now goes through with its photo.
        subprocess.run(
            ["mount", "-o", "remount,size=16m", str(tiny_media_dir)], check=True, timeout=10
        )
        status, body, _ = post_tip(web.url(), fields=fields, photos=[photo], key=key)
        assert status == 201, body
        assert len(body["photos"]) == 1
        tips = tip_by_description(system_env, fields["description"])
        assert sorted(t["ref"] for t in tips) == sorted([text_only["ref"], body["ref"]])
        with_photo = next(t for t in tips if t["ref"] == body["ref"])
        assert set(with_photo["photos"][0]) == _keys_on_disk(tiny_media_dir)
        tally.add("tips acknowledged")
        assert _temp_files(tiny_media_dir) == set()
        assert web.worker_pids() == pids
        assert "Traceback" not in web.output()


def test_photo_write_over_file_size_limit(system_env):
    """RLIMIT_FSIZE: writes past the limit fail with EFBIG (Python ignores SIGXFSZ)."""
    big_derivative = _noise_jpeg(PHOTO_SIZE, PHOTO_QUALITY)
    spooled = _noise_jpeg((900, 700), 92)  # over 500 KB: Werkzeug spools it to a temp file
    assert len(big_derivative) < 500 * 1024 < len(spooled)
    small = _noise_jpeg((200, 150), 80)
    limits = {resource.RLIMIT_FSIZE: (FSIZE_LIMIT, FSIZE_LIMIT)}
    before = _keys_on_disk(system_env.media_dir)
    temp_before = _temp_files(system_env.media_dir)  # a crash test may have left some
    with WebServer(system_env, rlimits=limits) as web:
        pids = web.worker_pids()
        for photo in (big_derivative, spooled):
            fields = canaries.tip_fields()
            status, body, head = post_tip(
                web.url(), fields=fields, photos=[photo], key=str(uuid.uuid4())
            )
            _assert_refused_for_storage(status, body, head)
            assert tip_by_description(system_env, fields["description"]) == []
        assert _temp_files(system_env.media_dir) == temp_before

        # Without the photo, or with one that fits, the same tip is taken.
        status, body, _ = post_tip(web.url(), fields=fields, key=str(uuid.uuid4()))
        assert status == 201, body
        _stored_once(system_env, fields, body)
        fields = canaries.tip_fields()
        status, body, _ = post_tip(web.url(), fields=fields, photos=[small], key=str(uuid.uuid4()))
        assert status == 201, body
        stored = _stored_once(system_env, fields, body)
        assert _keys_on_disk(system_env.media_dir) - before == set(stored["photos"][0])
        assert web.worker_pids() == pids  # no worker died of SIGXFSZ
        assert "Traceback" not in web.output()
