"""Idempotency keys: a retry returns the first response; a changed payload is refused."""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from app.db import insert_unless_exists
from app.reports.errors import BadIdempotencyKey, IdempotencyKeyReused
from app.reports.models import IdempotencyRecord
from app.security import keyed_hash

records = IdempotencyRecord.__table__


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


def claim_key(conn: Connection, secret: str, scope: str, key: str, print_: str) -> Row | None:
    """Claim the key for this request, or return the record of the request that owns it.

    The claim is the transaction's first write; when a concurrent request with the
    same key has committed first, its record is returned and nothing of ours is written.
    """
    key_hash = keyed_hash(secret, "idempotency", key)
    claimed = insert_unless_exists(
        conn,
        records,
        {
            "scope": scope,
            "key_hash": key_hash,
            "fingerprint": print_,
            "status_code": 0,
            "response": {},
        },
    )
    if claimed is not None:
        return None
    earlier = conn.execute(
        select(records).where(records.c.scope == scope, records.c.key_hash == key_hash)
    ).one()
    if earlier.fingerprint != print_:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request")
    return earlier


def complete_key(
    conn: Connection,
    secret: str,
    scope: str,
    key: str,
    *,
    status_code: int,
    response: dict,
    tip_id: int,
) -> None:
    """Store the response that later retries of this key will receive."""
    conn.execute(
        update(records)
        .where(
            records.c.scope == scope, records.c.key_hash == keyed_hash(secret, "idempotency", key)
        )
        .values(status_code=status_code, response=response, tip_id=tip_id)
    )
