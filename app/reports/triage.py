"""Priority of a new tip: category severity lifted by urgent words and context, with reasons.

The score is a sum of points, each kept as a reason the admin page shows:

| rule | points |
|---|---|
| `severity` (the base, from the category) | 4 → 7, 3 → 5, 2 → 3, 1 → 0 |
| `urgent_word` (each word once; see `match_urgent_words`) | its weight, all words ≤ 6 |
| `night` (22:00–06:00 Asia/Shanghai, by the time received) | +1 |
| `photo` | +1 |
| `on_scene_fix` (device or photo GPS, accuracy ≤ 100 m) | +1 |
| `trusted_reporter` (trust ≥ 0.75) | +1 |
| `untrusted_reporter` (trust < 0.25: mostly unconfirmed, or malicious tips) | -2 |

Thresholds: **urgent** ≥ 9, **high** ≥ 6, **normal** ≥ 3, **low** below 3. Urgent also
needs a severe category (severity 4) or an urgent word: context alone never makes an
ordinary tip urgent (the `urgent_gate` reason says so when it applies). So a robbery
with "持刀" is urgent from the words alone; a damaged facility (severity 1) can reach
at most normal without words; a theft reported on the scene is high, by address normal.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.i18n import t
from app.refcache import Refreshed
from app.reports.models import Tip, UrgentWord

PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
BASE_POINTS = {4: 7, 3: 5, 2: 3, 1: 0}
THRESHOLDS = (("urgent", 9), ("high", 6), ("normal", 3))  # else "low"
MAX_WORD_POINTS = 6
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
NIGHT_START, NIGHT_END = 22, 6  # local hours: [22:00, 06:00)
ON_SCENE_ACCURACY_M = 100.0
TRUSTED, UNTRUSTED = 0.75, 0.25
# Trust: confirmed share with a prior of one confirmed in two, so one lucky tip is not
# "trusted" (with nothing closed yet, trust is unknown: None); a malicious tip weighs as
# three unconfirmed ones.
PRIOR_CONFIRMED, PRIOR_CLOSED, MALICIOUS_WEIGHT = 1, 2, 3

# word, weight: what people type when someone is in danger now (Chinese first).
DEFAULT_URGENT_WORDS = (
    ("救命", 4),
    ("求救", 3),
    ("持刀", 4),
    ("持枪", 4),
    ("刀", 2),
    ("枪", 3),
    ("砍人", 4),
    ("杀人", 4),
    ("着火", 3),
    ("起火", 3),
    ("失火", 3),
    ("火灾", 3),
    ("爆炸", 4),
    ("燃气泄漏", 3),
    ("煤气泄漏", 3),
    ("绑架", 4),
    ("抢劫", 3),
    ("抢", 2),
    ("打架", 2),
    ("斗殴", 2),
    ("受伤", 2),
    ("流血", 2),
    ("血", 2),
    ("跳楼", 4),
    ("孩子", 1),
    ("小孩", 1),
    ("儿童", 1),
    ("走失", 2),
    ("knife", 2),
    ("knives", 2),
    ("gun", 3),
    ("shooting", 4),
    ("fire", 2),
    ("explosion", 4),
    ("blood", 2),
    ("bleeding", 2),
    ("injured", 2),
    ("help", 2),
    ("kidnap", 4),
    ("kidnapped", 4),
    ("stabbed", 4),
    ("fight", 2),
    ("robbery", 3),
    ("child", 1),
    ("children", 1),
    ("kid", 1),
)


@dataclass(frozen=True)
class Assessment:
    """A priority with its rank (0 urgent .. 3 low), score and the reasons behind it."""

    priority: str
    rank: int
    score: int
    reasons: list[dict]


def normalise_text(text: str) -> str:
    """Fold full-width forms and case (NFKC + casefold), so ＫＮＩＦＥ and Knife both match."""
    return unicodedata.normalize("NFKC", text or "").casefold()


def _is_latin(word: str) -> bool:
    return word.isascii()


@functools.lru_cache(maxsize=8)
def _matcher(words: tuple[tuple[str, int], ...]) -> tuple:
    """Compile a word list once: longest first, Latin words as whole words (plural allowed)."""
    compiled = []
    for word, weight in sorted(words, key=lambda w: (-len(w[0]), w[0])):
        word = normalise_text(word).strip()
        if not word:
            continue
        pattern = None
        if _is_latin(word):
            # ASCII boundaries: \b would treat a neighbouring Chinese character as a letter.
            pattern = re.compile(rf"(?<![0-9a-z]){re.escape(word)}(?:e?s)?(?![0-9a-z])")
        compiled.append((word, weight, pattern))
    return tuple(compiled)


def _spans(text: str, word: str, pattern) -> list[tuple[int, int]]:
    """Every occurrence of word in text: regex matches for Latin, substrings for CJK."""
    if pattern is not None:
        return [m.span() for m in pattern.finditer(text)]
    spans, start = [], text.find(word)
    while start >= 0:
        spans.append((start, start + len(word)))
        start = text.find(word, start + 1)
    return spans


def match_urgent_words(text: str, words: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Return the (word, weight) pairs found in text, each once, in the order they appear.

    "持刀" found in "有人持刀" counts once: the "刀" inside it is not counted again,
    but a separate "刀" elsewhere in the text would be (longer words claim text first).
    """
    folded = normalise_text(text)
    if not folded:
        return []
    claimed: list[tuple[int, int]] = []
    found = []
    for word, weight, pattern in _matcher(tuple(words)):
        if word not in folded:  # the common case, settled in C before any regex runs
            continue
        free = [
            (s, e)
            for s, e in _spans(folded, word, pattern)
            if not any(cs <= s and e <= ce for cs, ce in claimed)
        ]
        if free:
            found.append((free[0][0], word, weight))
            claimed.extend(free)
    return [(word, weight) for _, word, weight in sorted(found)]  # in reading order


def is_night(at: dt.datetime) -> bool:
    """True between 22:00 and 06:00 in the city's time zone (Asia/Shanghai)."""
    hour = at.astimezone(LOCAL_TZ).hour
    return hour >= NIGHT_START or hour < NIGHT_END


def priority_for(score: int, *, severe: bool, has_words: bool) -> str:
    """Map a score to a priority with the thresholds in the module docstring."""
    for priority, threshold in THRESHOLDS:
        if score >= threshold and (priority != "urgent" or severe or has_words):
            return priority
    return "low"


def assess_priority(
    *,
    category_severity: int,
    text: str,
    received_at: dt.datetime,
    reporter_trust: float | None,
    has_photos: bool,
    accuracy_m: float | None,
    location_source: str,
    urgent_words: Iterable[tuple[str, int]],
) -> Assessment:
    """Score a tip and keep every reason, so staff can see why it sits where it does."""
    base = BASE_POINTS.get(category_severity, BASE_POINTS[2])
    reasons: list[dict] = [{"rule": "severity", "points": base, "detail": str(category_severity)}]
    word_points = 0
    for word, weight in match_urgent_words(text, urgent_words):
        points = max(0, min(weight, MAX_WORD_POINTS - word_points))
        word_points += points
        reasons.append({"rule": "urgent_word", "points": points, "detail": word})
    if is_night(received_at):
        reasons.append({"rule": "night", "points": 1})
    if has_photos:
        reasons.append({"rule": "photo", "points": 1})
    if location_source in ("device", "exif") and (
        (accuracy_m is not None and accuracy_m <= ON_SCENE_ACCURACY_M)
        or (accuracy_m is None and location_source == "exif")
    ):
        reasons.append({"rule": "on_scene_fix", "points": 1})
    if reporter_trust is not None:
        shown = f"{reporter_trust:.2f}"
        if reporter_trust >= TRUSTED:
            reasons.append({"rule": "trusted_reporter", "points": 1, "detail": shown})
        elif reporter_trust < UNTRUSTED:
            reasons.append({"rule": "untrusted_reporter", "points": -2, "detail": shown})
    score = sum(r["points"] for r in reasons)
    severe, has_words = category_severity >= 4, word_points > 0
    priority = priority_for(score, severe=severe, has_words=has_words)
    if score >= THRESHOLDS[0][1] and priority != "urgent":
        reasons.append({"rule": "urgent_gate", "points": 0})
    return Assessment(priority, PRIORITY_RANK[priority], score, reasons)


def describe_reason(reason: dict, locale: str | None = "zh") -> str:
    """Render one reason for the admin page, e.g. "紧急词「刀」 +2"."""
    points = reason.get("points", 0)
    label = t(f"triage.reason.{reason['rule']}", locale, detail=reason.get("detail", ""))
    return f"{label} {points:+d}" if points else label


# --- the urgent-word table -------------------------------------------------------------------

_words = UrgentWord.__table__


def _load_words(conn: Connection) -> tuple[tuple[str, int], ...]:
    rows = conn.execute(select(_words.c.word, _words.c.weight, _words.c.active)).all()
    if not rows:  # never seeded: use the defaults rather than recognise nothing
        return default_urgent_words()
    return tuple((r.word, r.weight) for r in rows if r.active)


# Read on every tip; an edit in this process clears it, other processes see it within the ttl.
_active_words = Refreshed(_load_words)


def default_urgent_words() -> tuple[tuple[str, int], ...]:
    """Return the built-in urgent words with their weights."""
    return DEFAULT_URGENT_WORDS


def load_urgent_words(source: Connection | Session) -> tuple[tuple[str, int], ...]:
    """Return the active (word, weight) pairs, from the per-process cache."""
    return _active_words.get(source)


def seed_urgent_words(session: Session) -> int:
    """Insert missing default words; words already there (perhaps edited) are left alone."""
    have = set(session.scalars(select(UrgentWord.word)))
    added = 0
    for word, weight in DEFAULT_URGENT_WORDS:
        if word not in have:
            session.add(UrgentWord(word=word, weight=weight, active=True))
            added += 1
    session.flush()
    _active_words.clear()
    return added


def set_urgent_word(session: Session, word: str, weight: int, active: bool = True) -> UrgentWord:
    """Add or change an urgent word (stored folded, so the table has one spelling of each)."""
    folded = normalise_text(word).strip()
    if not folded or len(folded) > 40:
        raise DomainError(
            "an urgent word has 1 to 40 characters",
            fields={"word": ["1 to 40 characters"]},
            code="invalid_urgent_word",
        )
    if not 0 <= weight <= MAX_WORD_POINTS:
        raise DomainError(
            f"an urgent word weighs 0 to {MAX_WORD_POINTS} points",
            fields={"weight": [f"0 to {MAX_WORD_POINTS}"]},
            code="invalid_urgent_word",
        )
    row = session.scalar(select(UrgentWord).where(UrgentWord.word == folded))
    if row is None:
        row = UrgentWord(word=folded)
        session.add(row)
    row.weight, row.active = weight, active
    session.flush()
    _active_words.clear()
    return row


def list_urgent_words(session: Session) -> list[UrgentWord]:
    """Return every urgent word, active or not, for the admin's editor."""
    return list(session.scalars(select(UrgentWord).order_by(UrgentWord.word)))


# --- reporter trust ---------------------------------------------------------------------------

_tips = Tip.__table__
_TRUST_QUERY = select(
    func.count(_tips.c.outcome),
    func.coalesce(func.sum(case((_tips.c.outcome == "confirmed", 1), else_=0)), 0),
    func.coalesce(func.sum(case((_tips.c.outcome == "malicious", 1), else_=0)), 0),
)


def trust_from_counts(closed: int, confirmed: int, malicious: int) -> float | None:
    """Confirmed share with a small-sample prior; malicious tips count extra against it."""
    if closed <= 0:
        return None
    total = closed + PRIOR_CLOSED + (MALICIOUS_WEIGHT - 1) * malicious
    return (confirmed + PRIOR_CONFIRMED) / total


def reporter_trust(conn: Connection, reporter_id: int | None) -> float | None:
    """Return the reporter's trust from their closed tips' outcomes; None when new or anonymous."""
    if reporter_id is None:
        return None
    closed, confirmed, malicious = conn.execute(
        _TRUST_QUERY.where(_tips.c.reporter_id == reporter_id, _tips.c.outcome.is_not(None))
    ).one()
    return trust_from_counts(int(closed), int(confirmed), int(malicious))
