"""Planted canaries (QUALITY.md 40): values the system is given but must never write to a log.

Tests plant them through normal use: `tip_fields()` for a tip, `CLIENT_HEADERS`
(sent by harness.post_tip on every request), the fake Telegram users' names, and
values only known at run time (session cookies, CSRF tokens, the bot token, the
webhook secret) registered with `plant(name, value)`. test_zz_log_canaries.py then
scans every file the suite's processes wrote with `scan()`.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# A reporter's name: the fake Telegram users carry these (tests/fake_telegram.py).
REPORTER_NAMES = ("CanaryFirst", "CanaryLast", "canary_username")
TIP_TEXT = "金丝雀线索 canary-tip-text-Q7ZK"
ADDRESS = "金丝雀路 canary-address-88"
# The planted position (inside the demo layer, away from the city centre the docs quote).
LAT, LON = 40.61932, 122.47261
IP = "203.0.113.77"  # TEST-NET-3: sent as X-Forwarded-For / X-Real-IP
CLIENT_HEADERS = {"X-Forwarded-For": IP, "X-Real-IP": IP}
EMAIL = "canary.informant@example.org"
PHONE = "+86 139 0417 7321"
WEBHOOK_SECRET = "canary-webhook-secret-3XQ9P"
WRONG_WEBHOOK_SECRET = "canary-wrong-secret-8MZV2"
SECRET_KEY = "canary-secret-key-" + secrets.token_hex(16)  # fresh: Redis keys per run

_STATIC: dict[str, str] = {
    **{f"reporter name {i}": name for i, name in enumerate(REPORTER_NAMES, 1)},
    "tip text": TIP_TEXT,
    "address": ADDRESS,
    # As the app would print them: truncated and rounded to 4 decimals, and in full.
    "latitude": f"{LAT:.5f}",
    "latitude 4dp": f"{LAT:.4f}",
    "longitude": f"{LON:.5f}",
    "longitude 4dp": f"{LON:.4f}",
    "ip": IP,
    "email": EMAIL,
    "phone": PHONE,
    "phone digits": PHONE.replace(" ", "").removeprefix("+86"),
    "webhook secret": WEBHOOK_SECRET,
    "wrong webhook secret": WRONG_WEBHOOK_SECRET,
    "secret key": SECRET_KEY,
}
_planted: dict[str, str] = {}
_lock = threading.Lock()
_serial = itertools.count(1)


def plant(name: str, value: str) -> None:
    """Register a value known only at run time (a token, a cookie) to be scanned for."""
    if value and len(value) >= 6:  # shorter values would match by chance
        with _lock:
            _planted[f"{name} #{len(_planted) + 1}"] = value


def all_canaries() -> dict[str, str]:
    """Every canary, static and planted, by name."""
    with _lock:
        return {**_STATIC, **_planted}


def tip_fields(**overrides) -> dict:
    """Form fields of a tip carrying the text, address and position canaries (a fresh text each)."""
    fields = {
        "category": "suspicious",
        "description": f"{TIP_TEXT} #{next(_serial)}",
        "latitude": f"{LAT:.5f}",
        "longitude": f"{LON:.5f}",
        "accuracy_m": "15",
        "address": ADDRESS,
    }
    fields.update(overrides)
    return fields


@dataclass(frozen=True)
class Finding:
    """A canary seen in a file; the value itself is masked in every report."""

    path: Path
    line: int
    name: str
    masked: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name} ({self.masked})"


def mask(value: str) -> str:
    """Show only enough of a canary to recognise it."""
    return value[:3] + "…" + f"[{len(value)} chars]"


def scan(paths: Iterable[Path], canaries: dict[str, str] | None = None) -> list[Finding]:
    """Return every line of every file (recursively) that contains a canary."""
    canaries = all_canaries() if canaries is None else canaries
    findings = []
    for root in paths:
        files = sorted(p for p in Path(root).rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            text = file.read_bytes().decode("utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                for name, value in canaries.items():
                    if value in line:
                        findings.append(Finding(file, number, name, mask(value)))
    return findings
