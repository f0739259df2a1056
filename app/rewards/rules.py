"""The pure logic of points: which rules apply, the cap, periods, ranking, digest timing.

No database here, so every decision the ledger makes can be tested in isolation.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.errors import DomainError

# Rule codes and their default points (admins edit the values in `reward_rules`).
RULE_DEFAULTS: dict[str, int] = {
    "tip_confirmed": 10,
    "urgent_confirmed": 10,  # on top of tip_confirmed
    "first_reporter": 5,  # the first tip of an incident
    "later_duplicate": 0,  # later tips of the same incident: nothing, and never negative
    "led_to_resolution": 5,
    "unfounded": 0,
    "malicious": -20,
}
# Numbers that govern the rules (admins edit them in `reward_settings`).
SETTING_DEFAULTS: dict[str, int] = {
    # Positive points a reporter can earn in one month (the ledger's period); 0 = no cap.
    "period_cap": 300,
    # An entry worth more than this (either sign) waits for a second approver. With the
    # defaults only the malicious penalty does: one officer cannot fine an informant alone.
    "second_approval_above": 15,
    "nominees_per_group": 3,
    # Points notices go out once a day at this UTC hour (12 = 20:00 in China).
    "digest_hour_utc": 12,
}
SETTING_LIMITS: dict[str, tuple[int, int]] = {
    "period_cap": (0, 100_000),
    "second_approval_above": (0, 100_000),
    "nominees_per_group": (1, 50),
    "digest_hour_utc": (0, 23),
}
RULE_POINTS_LIMIT = 1000
ROLES = ("taxi_driver", "volunteer", "enterprise_guard", "citizen")
# Organisation kinds with an award of their own: "safe enterprise" and "safe unit".
ORG_AWARDS = {"enterprise": "safe_enterprise", "unit": "safe_unit"}


class InvalidPeriod(DomainError):
    """The period is not YYYY, YYYY-Qn or YYYY-MM."""

    code = "invalid_period"
    status = 422


@dataclass(frozen=True)
class TipState:
    """What the rules look at in a tip."""

    status: str
    outcome: str | None
    priority: str
    in_incident: bool = False
    first_of_incident: bool = False


def rules_that_apply(tip: TipState) -> set[str]:
    """Return the rule codes the tip's current state earns (the ledger is brought in line)."""
    if tip.outcome == "malicious":
        return {"malicious"}
    if tip.status == "duplicate":
        return {"later_duplicate"}
    if tip.outcome == "unfounded":
        return {"unfounded"}
    if tip.outcome != "confirmed":
        return set()
    rules = {"tip_confirmed"}
    if tip.priority == "urgent":
        rules.add("urgent_confirmed")
    if tip.in_incident:
        rules.add("first_reporter" if tip.first_of_incident else "later_duplicate")
    if tip.status == "resolved":
        rules.add("led_to_resolution")
    return rules


def credit_under_cap(points: int, earned: int, cap: int) -> int:
    """Return how much of a positive award fits under the cap (penalties are never capped)."""
    if points <= 0 or cap <= 0:
        return points
    return max(0, min(points, cap - earned))


def needs_second_approval(points: int, threshold: int) -> bool:
    """Say whether an entry is large enough (either sign) to wait for a second approver."""
    return abs(points) > threshold


# --- periods ------------------------------------------------------------------------------
_PERIOD_RE = re.compile(r"^(\d{4})(?:-(?:Q([1-4])|(0[1-9]|1[0-2])))?$")


@dataclass(frozen=True)
class Period:
    """A month, quarter or year, and the months (the ledger's grain) it covers."""

    label: str
    kind: str  # month | quarter | year
    months: tuple[str, ...]

    def start(self) -> dt.datetime:
        """Return the first instant of the period (UTC)."""
        year, month = map(int, self.months[0].split("-"))
        return dt.datetime(year, month, 1, tzinfo=dt.UTC)

    def end(self) -> dt.datetime:
        """Return the first instant after the period (UTC)."""
        year, month = map(int, self.months[-1].split("-"))
        return dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)


def parse_period(value: str) -> Period:
    """Parse 2026, 2026-Q4 or 2026-11 (case and spaces forgiven); refuse anything else."""
    cleaned = (value or "").strip().upper()
    match = _PERIOD_RE.match(cleaned)
    if not match or not 2000 <= int(match.group(1)) <= 2100:
        raise InvalidPeriod(
            "a period is YYYY, YYYY-Qn or YYYY-MM",
            fields={"period": ["e.g. 2026, 2026-Q4, 2026-11"]},
        )
    year, quarter, month = match.group(1), match.group(2), match.group(3)
    if month:
        return Period(cleaned, "month", (f"{year}-{month}",))
    if quarter:
        first = 3 * (int(quarter) - 1) + 1
        return Period(cleaned, "quarter", tuple(f"{year}-{m:02d}" for m in range(first, first + 3)))
    return Period(cleaned, "year", tuple(f"{year}-{m:02d}" for m in range(1, 13)))


def month_of(moment: dt.datetime) -> str:
    """Return the ledger period (UTC month) a moment falls in."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m")


def current_period(now: dt.datetime, kind: str = "month") -> str:
    """Return the label of the month, quarter or year containing `now`."""
    now = now.astimezone(dt.UTC)
    if kind == "year":
        return f"{now.year}"
    if kind == "quarter":
        return f"{now.year}-Q{(now.month - 1) // 3 + 1}"
    return month_of(now)


# --- ranking ------------------------------------------------------------------------------
def rank(rows: Iterable[dict], key: Callable[[dict], tuple]) -> list[dict]:
    """Sort rows best first by `key` and number them; ties share a rank (1, 2, 2, 4)."""
    ordered = sorted(rows, key=key)
    ranked: list[dict] = []
    previous = None
    for position, row in enumerate(ordered, start=1):
        score = key(row)[:-1]  # the last key part only makes the order stable
        if previous is None or score != previous[0]:
            previous = (score, position)
        ranked.append({**row, "rank": previous[1]})
    return ranked


def nominees(ranked: list[dict], how_many: int) -> list[dict]:
    """Return the rows placed within the first `how_many` ranks with points above zero.

    Ties at the boundary are all nominated: a jury must not be handed an arbitrary cut.
    """
    return [r for r in ranked if r["rank"] <= how_many and r["points"] > 0]


# --- notices ------------------------------------------------------------------------------
def next_digest_at(now: dt.datetime, hour_utc: int) -> dt.datetime:
    """Return the next daily digest time strictly after `now` (a fixed hour, UTC)."""
    now = now.astimezone(dt.UTC)
    at = now.replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    return at if at > now else at + dt.timedelta(days=1)
