"""Staff password hashing with argon2id; oversize input is refused before any hashing."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_PASSWORD_BYTES = 1024
_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)


def hash_password(password: str) -> str:
    """Hash a password; refuse empty or oversize ones before spending a hash on them."""
    if not password or len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password is 1 to {MAX_PASSWORD_BYTES} bytes")
    return _hasher.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    """Verify a password; oversize input and unusable hashes are simply wrong."""
    if not stored or len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
