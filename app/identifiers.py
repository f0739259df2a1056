"""Public identifiers: tip references, pseudonyms and receipts (CONTRACT.md formats)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

# Crockford base-32: no I, L, O, U, so references survive being read aloud or typed.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REF_RE = re.compile(r"^T-[0-9A-HJKMNP-TV-Z]{6}$")
PSEUDONYM_RE = re.compile(r"^R-[0-9A-HJKMNP-TV-Z]{4,6}$")
RECEIPT_RE = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{4}$")
_CROCKFORD_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V"})


def _crockford(n: int) -> str:
    """Return n random Crockford characters (one urandom read; 256 is a multiple of 32)."""
    return "".join(CROCKFORD[b & 31] for b in secrets.token_bytes(n))


def new_tip_ref() -> str:
    """Make a tip reference such as T-7K3M9Q."""
    return "T-" + _crockford(6)


def new_pseudonym(length: int = 4) -> str:
    """Make a reporter pseudonym such as R-7F3K (callers lengthen it on collision)."""
    return "R-" + _crockford(length)


def normalise_ref(value: str) -> str | None:
    """Accept a typed reference in any case, with Crockford look-alikes, else None."""
    cleaned = value.strip().upper().translate(_CROCKFORD_ALIASES)
    if not cleaned.startswith("T-") and len(cleaned) == 6:
        cleaned = "T-" + cleaned
    return cleaned if REF_RE.match(cleaned) else None


def new_receipt() -> str:
    """Make a 16-digit anonymous receipt, grouped by four."""
    digits = f"{secrets.randbelow(10**16):016d}"
    return "-".join(digits[i : i + 4] for i in range(0, 16, 4))


def receipt_from_key(secret: str, idempotency_key: str) -> str:
    """Derive the receipt from an idempotency key, so a replay can repeat it without storing it."""
    mac = hmac.new(secret.encode(), b"receipt:" + idempotency_key.encode(), hashlib.sha256)
    digits = f"{int.from_bytes(mac.digest()[:8], 'big') % 10**16:016d}"
    return "-".join(digits[i : i + 4] for i in range(0, 16, 4))


def normalise_receipt(value: str) -> str | None:
    """Accept a receipt typed with or without separators, else None."""
    digits = re.sub(r"[\s-]", "", value or "")
    if not re.fullmatch(r"\d{16}", digits):
        return None
    return "-".join(digits[i : i + 4] for i in range(0, 16, 4))
