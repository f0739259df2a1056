"""Local media storage: content keys, hostile keys (case 7), a full disk (case 33)."""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.reports import storage
from app.reports.storage import (
    InvalidMediaKey,
    LocalMediaStore,
    MediaStore,
    StorageFull,
    key_for,
    validate_key,
)

PHOTO = b"\xff\xd8\xff\xe0" + b"not really a jpeg, storage does not care" * 50 + b"\xff\xd9"


@pytest.fixture
def store(tmp_path: Path) -> LocalMediaStore:
    """A store in a fresh directory."""
    return LocalMediaStore(tmp_path / "media")


def _files(root: Path) -> list[Path]:
    """Every regular file under root, temp files included."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def _fd_path(fd: int) -> str:
    """Where an open descriptor points (Linux)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


# --- content addressing ---------------------------------------------------------


def test_put_makes_a_content_addressed_key(store):
    key = store.put(PHOTO)
    digest = hashlib.sha256(PHOTO).hexdigest()
    assert key == f"{digest[:2]}/{digest[2:4]}/{digest}.jpg" == key_for(PHOTO)
    assert (store.root / key).read_bytes() == PHOTO
    assert stat.S_IMODE((store.root / key).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.tmp.stat().st_mode) == 0o700
    assert list(store.tmp.iterdir()) == []


def test_same_content_twice_is_one_file(store):
    assert store.put(PHOTO) == store.put(PHOTO)
    assert _files(store.root) == [store.root / key_for(PHOTO)]


def test_storing_again_renews_the_sweepers_clock(store):
    # An old orphan of the same photo must not be swept between put and commit.
    key = store.put(PHOTO)
    long_ago = time.time() - 7 * 86400
    os.utime(store.root / key, (long_ago, long_ago))
    store.put(PHOTO)
    assert dict(store.iter_keys())[key] > time.time() - 3600


def test_a_damaged_copy_is_replaced(store):
    key = store.put(PHOTO)
    (store.root / key).write_bytes(PHOTO[:10])  # e.g. a disk-level accident
    assert store.put(PHOTO) == key
    assert (store.root / key).read_bytes() == PHOTO


def test_concurrent_puts_of_the_same_photo(store):
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(store.put(PHOTO))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(keys)) == 1 and len(keys) == 8
    assert _files(store.root) == [store.root / keys[0]]


def test_read_exists_path_delete(store):
    key = store.put(PHOTO)
    other = store.put(b"thumbnail bytes")
    assert store.exists(key) and store.path(key) == store.root / key
    with store.open(key) as fh:
        assert fh.read() == PHOTO
    store.delete(key)
    store.delete(key)  # deletes are retried: absent is fine
    assert not store.exists(key) and store.path(key) is None
    with pytest.raises(FileNotFoundError):
        store.open(key)
    assert store.exists(other)


def test_suffix_is_checked(store):
    assert store.put(PHOTO, suffix=".webp").endswith(".webp")
    for bad in ("/../../x", ".JPG", "jpg", ".j/g", ".a\x00", "." + "a" * 9):
        with pytest.raises(ValueError):
            store.put(PHOTO, suffix=bad)


def test_local_store_has_the_interface():
    for name, member in inspect.getmembers(MediaStore, inspect.isfunction):
        if not name.startswith("_"):
            ours = getattr(LocalMediaStore, name)
            assert list(inspect.signature(ours).parameters) == list(
                inspect.signature(member).parameters
            ), name


# --- case 7: names never touch the disk -------------------------------------------


def test_put_takes_no_name():
    # A client's filename has no way in: the store makes every name itself.
    assert list(inspect.signature(LocalMediaStore.put).parameters) == ["self", "data", "suffix"]


GOOD = key_for(PHOTO)
HOSTILE = [
    "../../etc/passwd",
    "../../etc/passwd.jpg",
    "/etc/passwd",
    "/" + GOOD,
    f"{GOOD[:6]}../../{GOOD[6:]}",
    "ab/cd/../../../etc/passwd.jpg",
    GOOD.replace(".jpg", "\x00.jpg"),
    GOOD + "\x00",
    GOOD + "\n",
    GOOD.replace("/", "\\"),
    "\u202e" + GOOD,
    GOOD.replace(".jpg", "\u202egpj.exe"),
    "a" * 10_000 + ".jpg",
    GOOD.upper(),
    "00/00/" + GOOD[6:],  # directories that do not match the hash
    GOOD + "/",
    "./" + GOOD,
    "tmp/put-x.part",
    "",
]


@pytest.mark.parametrize("key", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_keys_are_refused(store, key):
    for op in (store.open, store.path, store.exists, store.delete):
        with pytest.raises(InvalidMediaKey):
            op(key)


def test_refused_delete_touches_nothing(store, tmp_path):
    sentinel = tmp_path / "sentinel.jpg"
    sentinel.write_bytes(b"keep me")
    with pytest.raises(InvalidMediaKey):
        store.delete("../sentinel.jpg")
    with pytest.raises(InvalidMediaKey):
        store.delete(str(sentinel))
    assert sentinel.read_bytes() == b"keep me"


def test_non_string_keys_are_refused(store):
    for key in (None, 42, GOOD.encode(), Path(GOOD)):
        with pytest.raises(InvalidMediaKey):
            store.exists(key)


# Strings around a real key (the regex unanchored): the near misses that matter.
NEAR_KEYS = st.one_of(st.text(max_size=120), st.from_regex(storage._KEY, fullmatch=False))


@given(NEAR_KEYS)
def test_any_accepted_key_stays_inside_the_root(text):
    root = Path("/srv/media")
    try:
        validate_key(text)
    except InvalidMediaKey:
        return
    assert (root / text).resolve().is_relative_to(root)
    assert ".." not in Path(text).parts and not Path(text).is_absolute()


# --- the sweeper's view --------------------------------------------------------------


def test_iter_keys_lists_stored_files_only(store):
    keys = {store.put(PHOTO), store.put(b"another")}
    (store.tmp / "put-left-over.part").write_bytes(b"half")
    first = store.root / GOOD.split("/")[0]
    (first / GOOD.split("/")[1] / "notes.txt").write_text("stray")
    (store.root / "zz").mkdir()
    (store.root / "README").write_text("stray")
    listed = dict(store.iter_keys())
    assert set(listed) == keys
    assert all(abs(mtime - time.time()) < 3600 for mtime in listed.values())


def test_clean_temp_removes_only_stale_files(store):
    old, young = store.tmp / "put-old.part", store.tmp / "put-young.part"
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert store.clean_temp(older_than_seconds=600) == 1
    assert not old.exists() and young.exists()


# --- case 33: the disk is full ---------------------------------------------------------


def _assert_nothing_stored(store):
    """No temp file, no final file, no half anything."""
    assert _files(store.root) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO])
def test_disk_full_while_writing(store, monkeypatch, code):
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd, data):
        if not _fd_path(fd).startswith(str(store.tmp)):
            return real_write(fd, data)
        calls["n"] += 1
        if calls["n"] == 1:  # a short write first, as a filling disk does
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StorageFull) as err:
        store.put(PHOTO)
    assert err.value.status == 503 and err.value.code == "storage_unavailable"
    assert err.value.retry_after == 30
    assert isinstance(err.value.__cause__, OSError) and err.value.__cause__.errno == code
    assert calls["n"] == 2
    _assert_nothing_stored(store)
    monkeypatch.undo()  # space is freed: the retry succeeds
    assert store.put(PHOTO) == key_for(PHOTO)


def test_disk_full_at_fsync(store, monkeypatch):
    real_fsync = os.fsync

    def failing(fd):
        if _fd_path(fd).startswith(str(store.tmp)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(StorageFull):
        store.put(PHOTO)
    _assert_nothing_stored(store)


def test_no_room_for_the_temp_file(store, monkeypatch):
    def no_inodes(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.tempfile, "mkstemp", no_inodes)
    with pytest.raises(StorageFull):
        store.put(PHOTO)
    _assert_nothing_stored(store)


def test_rename_fails(store, monkeypatch):
    def failing(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(StorageFull):
        store.put(PHOTO)
    _assert_nothing_stored(store)
