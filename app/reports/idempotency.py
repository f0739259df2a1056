"""Idempotency keys: a retry returns the first response; a changed payload is refused."""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.reports.errors import BadIdempotencyKey, IdempotencyKeyReused
from app.reports.models import IdempotencyRecord
from app.security import keyed_hash


def check_key(key: str | None) -> str | None:
    """Return the key in canonical form, or raise if it is not a UUID."""
    if key is None:
        return None
    try:
        return str(uuid.UUID(key.strip()))
    except (ValueError, AttributeError):
        raise BadIdempotencyKey("Idempotency-Key must be a UUID") from None


def fingerprint(payload: dict) -> str:
    """Hash a request's meaning (validated fields and photo hashes) to compare retries."""
    blob = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def scope_for(reporter_id: int | None) -> str:
    """Keys are unique per reporter; anonymous callers share one scope of random UUIDs."""
    return f"reporter:{reporter_id}" if reporter_id is not None else "anonymous"


def find_record(session: Session, secret: str, scope: str, key: str) -> IdempotencyRecord | None:
    """Return the stored record for (scope, key), if any."""
    key_hash = keyed_hash(secret, "idempotency", key)
    return session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key_hash == key_hash
        )
    )


def claim_key(
    session: Session, secret: str, scope: str, key: str, print_: str
) -> IdempotencyRecord | None:
    """Claim the key for this request; return the earlier record if another request owns it.

    The insert happens in a savepoint before any other write, so when a concurrent
    request with the same key wins the unique constraint, nothing of ours is lost.
    """
    existing = find_record(session, secret, scope, key)
    if existing is None:
        record = IdempotencyRecord(
            scope=scope,
            key_hash=keyed_hash(secret, "idempotency", key),
            fingerprint=print_,
            status_code=0,
            response={},
        )
        try:
            with session.begin_nested():
                session.add(record)
        except IntegrityError:
            existing = find_record(session, secret, scope, key)
            if existing is None:  # the other request rolled back after all
                raise
        else:
            return None
    if existing.fingerprint != print_:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request")
    return existing


def complete_key(
    session: Session,
    secret: str,
    scope: str,
    key: str,
    *,
    status_code: int,
    response: dict,
    tip_id: int,
) -> None:
    """Store the response that later retries of this key will receive."""
    record = find_record(session, secret, scope, key)
    record.status_code = status_code
    record.response = response
    record.tip_id = tip_id
