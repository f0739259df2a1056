"""A process-wide tally of what the system suite did, printed in pytest's terminal summary."""

from __future__ import annotations

import threading
from collections import Counter

# The counts issue 9 asks the summary to show, in this order (others follow, sorted).
REPORTED = (
    "tips acknowledged",
    "tips present",
    "photo files",
    "photo rows",
    "messages queued",
    "messages sent",
    "crashes injected",
    "fuzz cases run",
    "canaries found",
)

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def add(name: str, n: int = 1) -> None:
    """Count n more of something (thread-safe)."""
    with _lock:
        _counts[name] += n


def put(name: str, value: int) -> None:
    """Record a measured total (e.g. rows present at the end), replacing any earlier one."""
    with _lock:
        _counts[name] = value


def counts() -> dict[str, int]:
    """The tally so far, the reported names first."""
    with _lock:
        snapshot = dict(_counts)
    ordered = {name: snapshot.pop(name, 0) for name in REPORTED}
    return {**ordered, **dict(sorted(snapshot.items()))}


def lines() -> list[str]:
    """The summary, one count per line."""
    snapshot = counts()
    width = max(map(len, snapshot))
    return [f"{name:<{width}} : {value}" for name, value in snapshot.items()]
