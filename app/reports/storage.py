"""Media storage behind a small interface: local disk, or an S3-compatible object store.

Keys are made here from the content's SHA-256, never from anything a client sent,
so a filename cannot reach the disk and the same photo is stored once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from app.durable import fsync_dir
from app.errors import Unavailable
from app.faults import fault_point

# ab/cd/abcd...(64 hex).jpg: the two directory levels must repeat the hash's first
# four digits, so every key names exactly one place and nothing else parses as one.
_KEY = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/\1\2[0-9a-f]{60}\.[a-z0-9]{1,8}", re.ASCII)
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}", re.ASCII)
_HEX2 = re.compile(r"[0-9a-f]{2}", re.ASCII)
_TMP = "tmp"


class StorageUnavailable(Unavailable):
    """The store could not be read or written just now (503 + Retry-After); nothing was kept."""

    code = "storage_unavailable"

    def __init__(self, message: str = "photo storage is unavailable; try again shortly", **kw):
        kw.setdefault("retry_after", 30)
        super().__init__(message, **kw)


class StorageFull(StorageUnavailable):
    """The disk (or the object store) refused the write: full, over quota, or failing."""


class InvalidMediaKey(ValueError):
    """A key that this store could not have made; refused before touching the disk."""


class MediaStore(Protocol):
    """Where derivatives and thumbnails live; keys are opaque strings the store makes."""

    def put(self, data: bytes, *, suffix: str = ".jpg") -> str:
        """Store the bytes durably and return their key (same bytes, same key)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the stored bytes for reading; FileNotFoundError when absent."""
        ...

    def path(self, key: str) -> Path | None:
        """The local file for the key (for send_file), or None when there is none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the key is stored."""
        ...

    def delete(self, key: str) -> None:
        """Remove the key; absent keys are not an error (deletes are retried)."""
        ...

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        """Every stored key with its modification time, for the orphan sweeper."""
        ...

    def clean_temp(self, older_than_seconds: float) -> int:
        """Remove leftovers of interrupted writes; return how many (0 where there are none)."""
        ...


def validate_key(key: str) -> str:
    """Return the key if it has exactly the form put() makes, else raise InvalidMediaKey."""
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise InvalidMediaKey("not a media key")
    return key


def is_key(text: str) -> bool:
    """Whether the text has exactly the form put() makes (for listings of a store)."""
    return isinstance(text, str) and _KEY.fullmatch(text) is not None


def key_for(data: bytes, suffix: str = ".jpg") -> str:
    """The content-addressed key of the bytes: ab/cd/<sha256><suffix>."""
    if _SUFFIX.fullmatch(suffix) is None:
        raise ValueError("suffix must be a dot and 1-8 lowercase letters or digits")
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{digest}{suffix}"


class LocalMediaStore:
    """Files under one root, written atomically (temp file, fsync, rename, fsync dir)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / _TMP
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.tmp, 0o700)  # mkdir's mode is filtered by the umask

    def put(self, data: bytes, *, suffix: str = ".jpg") -> str:
        """Write once per content; a failed write leaves no temp file and raises StorageFull."""
        key = key_for(data, suffix)
        final = self.root / key
        if _already_stored(final, len(data)):
            return key  # content addressing makes the put idempotent
        try:
            changed_dirs = _make_dirs(final.parent)
            self._write_atomically(data, final)
            # Make the new names survive a power cut. Should this fail, the file is
            # already whole under its content key: a retry finds it, the sweeper
            # removes it if no row ever points at it.
            for directory in (final.parent, *changed_dirs):
                fsync_dir(directory)
            fault_point("photo_written")  # tests/system: the file is stored, its row is not
        except OSError as exc:  # ENOSPC, EDQUOT, EFBIG, EIO...: all mean "not stored"
            raise StorageFull() from exc
        return key

    def _write_atomically(self, data: bytes, final: Path) -> None:
        """Fill and fsync a private temp file, then rename it over the final name."""
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="put-", suffix=".part")
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise

    def open(self, key: str) -> BinaryIO:
        """Open the stored file for reading."""
        return open(self._file(key), "rb")

    def path(self, key: str) -> Path | None:
        """The file's path when it exists."""
        file = self._file(key)
        return file if file.is_file() else None

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._file(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file if it is there."""
        self._file(key).unlink(missing_ok=True)

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        """Walk the two hash levels only; tmp/ and anything not shaped like a key are skipped."""
        for first in _hex_subdirs(self.root):
            for second in _hex_subdirs(self.root / first):
                with os.scandir(self.root / first / second) as entries:
                    for entry in entries:
                        key = f"{first}/{second}/{entry.name}"
                        if _KEY.fullmatch(key) and entry.is_file(follow_symlinks=False):
                            yield key, entry.stat(follow_symlinks=False).st_mtime

    def clean_temp(self, older_than_seconds: float) -> int:
        """Remove temp files left by crashed writes; young ones may still be in use."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        with os.scandir(self.tmp) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def _file(self, key: str) -> Path:
        """Map a validated key to its file; the regex admits no '..', '/', NUL or escapes."""
        return self.root / validate_key(key)


def _already_stored(path: Path, size: int) -> bool:
    """True when a whole copy is there (renames are atomic); its mtime is renewed.

    The renewal matters: an old orphan of the same photo would otherwise look
    stale to the sweeper, which could delete it before the new row commits.
    """
    try:
        if path.stat().st_size != size:
            return False
        os.utime(path)
    except OSError:
        return False
    return True


def _make_dirs(directory: Path) -> list[Path]:
    """Create missing hash directories; return the parents whose listings changed."""
    changed = []
    for level in (directory.parent, directory):
        try:
            level.mkdir(mode=0o700)
            changed.append(level.parent)
        except FileExistsError:
            pass
    return changed


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (a full disk often does); loop until done."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _hex_subdirs(path: Path) -> list[str]:
    """Names of two-hex-digit subdirectories (this skips tmp/ and strays), sorted."""
    with os.scandir(path) as entries:
        return sorted(
            e.name for e in entries if _HEX2.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
        )


def make_media_store(settings) -> MediaStore:
    """Build the store the settings name (web app, bot and CLI share this one choice)."""
    if settings.media_backend == "local":
        return LocalMediaStore(settings.media_dir)
    if settings.media_backend == "s3":
        from app.reports.storage_s3 import S3MediaStore

        if not settings.s3_bucket:
            raise ValueError("TIPLINE_S3_BUCKET is required when TIPLINE_MEDIA_BACKEND=s3")
        return S3MediaStore(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
    raise ValueError(f"unknown media backend {settings.media_backend!r} (local or s3)")
