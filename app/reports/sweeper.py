"""The orphan sweep: files and photo rows must agree after any crash."""

from __future__ import annotations

import logging
import time

from sqlalchemy import select, union
from sqlalchemy.orm import Session

from app.reports.models import Audio, Photo
from app.reports.storage import MediaStore

log = logging.getLogger("tipline.sweeper")


def referenced_keys(session: Session) -> set[str]:
    """Return every media key some photo row refers to."""
    stmt = union(select(Photo.derivative_key), select(Photo.thumbnail_key), select(Audio.media_key))
    return set(session.scalars(stmt))


def sweep_orphans(
    session: Session, store: MediaStore, *, grace_seconds: int, now: float | None = None
) -> int:
    """Delete files no row refers to, once older than the grace period (in-flight tips)."""
    now = time.time() if now is None else now
    keep = referenced_keys(session)
    listed = dict(store.iter_keys())
    removed = 0
    for key, mtime in listed.items():
        if key not in keep and now - mtime >= grace_seconds:
            store.delete(key)
            removed += 1
    store.clean_temp(older_than_seconds=grace_seconds)
    # From the listing, not one exists() per row: on S3 that was a HEAD per stored file.
    # A referenced file is written before its row commits, so it is in a later listing.
    missing = len(keep - listed.keys())
    if missing:
        log.error("%d photo file(s) referenced by rows are missing from the store", missing)
    if removed:
        log.info("removed %d orphan file(s)", removed)
    return removed
