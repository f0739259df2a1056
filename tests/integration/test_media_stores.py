"""One interface, two stores: the same cases against the local disk and a real S3 server.

The S3 side talks HTTP to moto's standalone server (tests/s3server.py) through boto3.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
import time
from pathlib import Path

import boto3
import pytest

from app.config import Settings
from app.reports import sweeper
from app.reports.storage import (
    InvalidMediaKey,
    LocalMediaStore,
    MediaStore,
    StorageFull,
    StorageUnavailable,
    key_for,
    make_media_store,
)
from app.reports.storage_s3 import S3MediaStore
from tests.s3server import s3_bucket, s3_endpoint, s3_env  # noqa: F401 (fixtures)

PHOTO = b"\xff\xd8\xff\xe0" + b"storage does not look inside" * 40 + b"\xff\xd9"
THUMB = b"\xff\xd8 a thumbnail \xff\xd9"
GOOD = key_for(PHOTO)
HOSTILE = [
    "../../etc/passwd.jpg",
    "/" + GOOD,
    "ab/cd/../../../etc/passwd.jpg",
    GOOD.replace(".jpg", "\x00.jpg"),
    GOOD + "\n",
    "\u202e" + GOOD,
    GOOD.upper(),
    "00/00/" + GOOD[6:],
    "tmp/put-x.part",
    "",
]


@pytest.fixture(params=["local", "s3"])
def media(request, tmp_path: Path) -> MediaStore:
    """A fresh, empty store of each kind."""
    if request.param == "local":
        return LocalMediaStore(tmp_path / "media")
    bucket = request.getfixturevalue("s3_bucket")
    return S3MediaStore(bucket, prefix="media", endpoint_url=request.getfixturevalue("s3_endpoint"))


@pytest.mark.parametrize("cls", [LocalMediaStore, S3MediaStore])
def test_both_stores_have_the_interface(cls):
    for name, member in inspect.getmembers(MediaStore, inspect.isfunction):
        if not name.startswith("_"):
            assert list(inspect.signature(getattr(cls, name)).parameters) == list(
                inspect.signature(member).parameters
            ), name


def test_put_open_exists_delete(media):
    key = media.put(PHOTO)
    digest = hashlib.sha256(PHOTO).hexdigest()
    assert key == f"{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert media.exists(key)
    with media.open(key) as fh:
        assert fh.read() == PHOTO
    other = media.put(THUMB, suffix=".webp")
    assert other.endswith(".webp")
    media.delete(key)
    media.delete(key)  # retried deletes are fine
    assert not media.exists(key) and media.exists(other)
    with pytest.raises(FileNotFoundError):
        media.open(key)


def test_path_is_a_file_locally_and_none_on_s3(media):
    key = media.put(PHOTO)
    path = media.path(key)
    if isinstance(media, LocalMediaStore):
        assert path is not None and path.read_bytes() == PHOTO
    else:
        assert path is None  # views send the bytes from open()


def test_same_content_is_one_object(media):
    keys = []
    threads = [threading.Thread(target=lambda: keys.append(media.put(PHOTO))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert keys == [GOOD] * 6
    assert [k for k, _ in media.iter_keys()] == [GOOD]


def test_suffix_is_checked(media):
    for bad in ("/../../x", ".JPG", "jpg", "." + "a" * 9):
        with pytest.raises(ValueError):
            media.put(PHOTO, suffix=bad)
    assert list(media.iter_keys()) == []


@pytest.mark.parametrize("key", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_keys_are_refused(media, key):
    for op in (media.open, media.path, media.exists, media.delete):
        with pytest.raises(InvalidMediaKey):
            op(key)


def test_iter_keys_lists_keys_with_recent_times(media):
    keys = {media.put(PHOTO), media.put(THUMB)}
    listed = dict(media.iter_keys())
    assert set(listed) == keys
    assert all(abs(mtime - time.time()) < 3600 for mtime in listed.values())
    assert media.clean_temp(older_than_seconds=0) == 0


def test_sweeper_removes_orphans_in_either_store(media, monkeypatch):
    keep = media.put(PHOTO)
    orphan = media.put(THUMB)
    # The rows' side is the sweeper's own business (test_nothing_lost); here: the store's.
    monkeypatch.setattr(sweeper, "referenced_keys", lambda session: {keep})
    assert sweeper.sweep_orphans(None, media, grace_seconds=3600) == 0  # still young
    later = time.time() + 7200
    assert sweeper.sweep_orphans(None, media, grace_seconds=3600, now=later) == 1
    assert media.exists(keep) and not media.exists(orphan)


def test_sweeper_counts_missing_files_from_its_listing(media, monkeypatch, caplog):
    keep = media.put(PHOTO)
    gone = key_for(b"a row whose file is not in the store")
    monkeypatch.setattr(sweeper, "referenced_keys", lambda session: {keep, gone})

    def no_probe(key):  # one request per stored file on S3: the listing already says
        raise AssertionError("exists() called by the sweeper")

    monkeypatch.setattr(media, "exists", no_probe)
    with caplog.at_level("ERROR", logger="tipline.sweeper"):
        assert sweeper.sweep_orphans(None, media, grace_seconds=0) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "1 photo file(s) referenced by rows are missing from the store"
    ]


# --- S3 only ----------------------------------------------------------------------------


def test_s3_strays_and_other_prefixes_are_not_listed(s3_bucket, s3_endpoint):  # noqa: F811
    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    ours = S3MediaStore(s3_bucket, prefix="/tipline/media/", endpoint_url=s3_endpoint)
    theirs = S3MediaStore(s3_bucket, prefix="other", endpoint_url=s3_endpoint)
    key = ours.put(PHOTO)
    theirs.put(THUMB)
    client.put_object(Bucket=s3_bucket, Key="tipline/media/README", Body=b"stray")
    client.put_object(Bucket=s3_bucket, Key=f"tipline/media/{GOOD[:6]}notes.txt", Body=b"x")
    assert [k for k, _ in ours.iter_keys()] == [key]
    head = client.head_object(Bucket=s3_bucket, Key=f"tipline/media/{key}")
    assert head["ContentType"] == "image/jpeg" and head["ContentLength"] == len(PHOTO)
    assert not theirs.exists(key)


def _dead_store(bucket: str = "tipline") -> S3MediaStore:
    """A store whose endpoint refuses connections (a closed loopback port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return S3MediaStore(bucket, endpoint_url=f"http://127.0.0.1:{port}")


def test_s3_down_is_a_retryable_503(s3_env):  # noqa: F811
    store = _dead_store()
    with pytest.raises(StorageFull) as err:
        store.put(PHOTO)
    assert (err.value.status, err.value.code, err.value.retry_after) == (
        503,
        "storage_unavailable",
        30,
    )
    for op in (store.open, store.exists, store.delete):
        with pytest.raises(StorageUnavailable):
            op(GOOD)
    with pytest.raises(StorageUnavailable):
        list(store.iter_keys())


def test_s3_missing_bucket_refuses_the_write(s3_endpoint, s3_env):  # noqa: F811
    store = S3MediaStore("no-such-bucket-here", endpoint_url=s3_endpoint)
    with pytest.raises(StorageFull):
        store.put(PHOTO)
    with pytest.raises(StorageUnavailable):
        store.open(GOOD)  # "no such bucket" is not "no such photo"


def test_factory_builds_the_configured_store(tmp_path, s3_endpoint, s3_env):  # noqa: F811
    settings = Settings(
        database_url="sqlite://", secret_key="k", media_dir=tmp_path, instance_dir=tmp_path
    )
    assert isinstance(make_media_store(settings), LocalMediaStore)
    s3 = make_media_store(
        settings.with_(
            media_backend="s3", s3_bucket="b", s3_endpoint_url=s3_endpoint, s3_prefix="p"
        )
    )
    assert isinstance(s3, S3MediaStore) and (s3.bucket, s3.prefix) == ("b", "p/")
    with pytest.raises(ValueError, match="TIPLINE_S3_BUCKET"):
        make_media_store(settings.with_(media_backend="s3"))
    with pytest.raises(ValueError, match="unknown media backend"):
        make_media_store(settings.with_(media_backend="ftp"))
