"""Secrets at rest: tokens, receipts and channel ids are kept only as keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def keyed_hash(secret: str, purpose: str, value: str) -> str:
    """Return HMAC-SHA256(secret, purpose:value) as hex; the purpose keeps hashes apart."""
    msg = f"{purpose}:{value}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def new_token(prefix: str) -> str:
    """Make a bearer token with a readable prefix (tpr_ reporter, tps_ staff, tpk_ partner)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """Hash a high-entropy token for lookup; no key is needed at 256 bits of entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())
