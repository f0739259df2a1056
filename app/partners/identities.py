"""Open311 reporter fields → one reporter per person within a partner, kept restricted.

A partner may name the person behind a request (email, phone, device_id,
account_id, first/last name). Those values go only to the restricted identity
table (ReporterIdentity, channel "open311"): external_hash =
keyed_hash(secret, "open311", partner id + kind + normalised value) for look-up,
external_address = "kind:value" for the audited reveal. The same person sent
again by the same partner maps to the same reporter (role enterprise_guard, in
the partner's organisation), so recognition points reach them. No endpoint
returns these values and no log line carries them.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import insert_unless_exists
from app.errors import DomainError
from app.partners.keys import PARTNER_ROLE
from app.partners.models import Partner
from app.people.models import ReporterIdentity
from app.people.services import create_reporter
from app.security import keyed_hash

CHANNEL = "open311"
# Kinds that name one person; a name alone is weaker and is matched only without them.
STRONG_KINDS = ("account_id", "email", "phone", "device_id")
FIELDS = (*STRONG_KINDS, "first_name", "last_name")
MAX_LENGTH = {"email": 254, "phone": 32, "device_id": 200, "account_id": 200}
MAX_NAME = 100
_identities = ReporterIdentity.__table__


class InvalidReporterField(DomainError):
    """A reporter field that cannot be kept (too long)."""

    code = "invalid_reporter_field"
    status = 400


def _normalise(kind: str, value: str) -> str:
    """Canonical form, so the same person typed differently is still one person."""
    value = " ".join(value.split())
    if kind == "email":
        return value.lower()
    if kind == "phone":
        return re.sub(r"\D", "", value)
    if kind == "name":
        return value.casefold()
    return value


def person_keys(fields: dict) -> list[tuple[str, str]]:
    """Return [(kind, normalised value)] from the reporter fields sent, strongest first."""
    errors = {}
    for name in FIELDS:
        limit = MAX_LENGTH.get(name, MAX_NAME)
        if len(fields.get(name) or "") > limit:
            errors[name] = f"at most {limit} characters"
    if errors:
        raise InvalidReporterField("a reporter field is too long", fields=errors)
    keys = [
        (kind, _normalise(kind, fields[kind]))
        for kind in STRONG_KINDS
        if (fields.get(kind) or "").strip()
    ]
    keys = [(k, v) for k, v in keys if v]
    name = " ".join((fields.get(n) or "").strip() for n in ("first_name", "last_name")).strip()
    if name:
        keys.append(("name", _normalise("name", name)))
    return keys


def _hash(settings: Settings, partner_id: int, kind: str, value: str) -> str:
    return keyed_hash(settings.secret_key, CHANNEL, f"{partner_id}:{kind}:{value}")


def _find(session: Session, hashes: list[str]) -> int | None:
    """Return the reporter already bound to any of these hashes (the oldest binding wins)."""
    if not hashes:
        return None
    return session.scalar(
        select(ReporterIdentity.reporter_id)
        .where(ReporterIdentity.channel == CHANNEL, ReporterIdentity.external_hash.in_(hashes))
        .order_by(ReporterIdentity.id)
        .limit(1)
    )


def reporter_for_request(
    session: Session, settings: Settings, partner: Partner, fields: dict
) -> int:
    """Return the reporter a request is filed as: the named person's, else the partner's own.

    A new person gets a reporter (enterprise_guard, the partner's organisation) and
    one identity row per kind sent; a known person gains the kinds not bound yet.
    """
    keys = person_keys(fields)
    if not keys:
        return partner.reporter_id
    strong = [(k, v) for k, v in keys if k != "name"]
    lookup = strong or keys  # a name matches only when nothing stronger was sent
    hashes = {(k, v): _hash(settings, partner.id, k, v) for k, v in keys}
    reporter_id = _find(session, [hashes[kv] for kv in lookup])
    created = None
    if reporter_id is None:
        created = create_reporter(session, PARTNER_ROLE, partner.organisation_id)
        reporter_id = created.id
    conn = session.connection()
    for (kind, value), digest in hashes.items():
        if kind == "name" and strong and created is None:
            continue  # a known person's name is not re-bound: names are shared by many
        won = insert_unless_exists(
            conn,
            _identities,
            {
                "reporter_id": reporter_id,
                "channel": CHANNEL,
                "external_hash": digest,
                "external_address": f"{kind}:{value}",  # ≤ 265 characters: MAX_LENGTH
            },
        )
        if won is None and created is not None and (kind, value) in lookup:
            # A concurrent request bound this person first: use theirs, drop ours.
            winner = _find(session, [digest])
            session.execute(
                delete(ReporterIdentity).where(ReporterIdentity.reporter_id == created.id)
            )
            session.delete(created)
            session.flush()
            return winner if winner is not None else partner.reporter_id
    return reporter_id
