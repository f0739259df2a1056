"""Named places kept by grid workers, and placing a typed address by the landmark it names.

Matching is plain string work, tuned for Chinese addresses: both the landmark
names and the typed text are normalised the same way (NFKC, so full-width
digits and letters become ASCII; spaces and punctuation dropped; "3#楼" and
"三号楼" read as "3号楼"), then the longest landmark name or alias contained in
the text wins. A name stored with a locative ending ("二中门口") also matches
its bare form ("二中附近"). Everything else — "第二中学" for "二中" — is an
alias a grid worker typed, not a guess made here.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.errors import DomainError, NotFound
from app.grids.models import Grid, GridLayer
from app.refcache import Refreshed
from app.reports.models import Landmark
from app.staff.scope import Viewer

# Below this a match is only a suggestion: intake leaves the tip in the "needs location" queue.
PLACE_MIN_CONFIDENCE = 0.6
MIN_KEY_LENGTH = 2
MAX_ALIASES = 20
MAX_NAME_LENGTH = 200
# Words that say where *near* a place something is; "二中门口" and "二中旁边" are both at 二中.
LOCATIVE_SUFFIXES = (
    "门口",
    "附近",
    "旁边",
    "对面",
    "周边",
    "周围",
    "一带",
    "楼下",
    "楼上",
    "后面",
    "前面",
    "里面",
    "外面",
    "边上",
    "东侧",
    "西侧",
    "南侧",
    "北侧",
    "这边",
    "那边",
)
# Kinds of key, best first: the name itself, an alias, either with its locative ending cut.
KIND_NAME, KIND_ALIAS, KIND_BASE = 0, 1, 2
_KIND_WEIGHT = {KIND_NAME: 1.0, KIND_ALIAS: 0.95, KIND_BASE: 0.85}

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4}
_CN_DIGITS |= {"五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# Chinese numerals only where they count buildings, floors and units ("三号楼", "十二栋"):
# elsewhere they are part of a name ("二中", "五一广场") and stay as typed.
_NUMBERED = re.compile(r"([零〇一二两三四五六七八九十百]+)(?=号|栋|幢|单元|层|楼|期|排|组)")
_HASH_FOR_NUMBER = re.compile(r"(?<=\d)#")


class LandmarkInvalid(DomainError):
    """A landmark's name, aliases, grid or position cannot be stored."""

    code = "landmark_invalid"


@dataclass(frozen=True, slots=True)
class Match:
    """The landmark a text names, how sure the match is (0..1), and how many tied for it."""

    landmark_id: int
    name: str
    grid_code: str
    latitude: float
    longitude: float
    matched: str  # the normalised name or alias found in the text
    confidence: float
    candidates: int = 1  # landmarks at different places sharing the best key


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: int
    landmark_id: int
    name: str
    grid_code: str
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class LandmarkIndex:
    """Normalised keys of every landmark, grouped by length (longest first) for the scan."""

    keys: dict[str, tuple[_Entry, ...]]
    lengths: tuple[int, ...]


# --- normalisation ---------------------------------------------------------------------


def _chinese_number(word: str) -> int | None:
    """Read a Chinese numeral below 1000 ("三" 3, "十二" 12, "二十" 20, "一百零五" 105)."""
    total, current = 0, 0
    for ch in word:
        if ch == "百":
            total += (current or 1) * 100
            current = 0
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch in _CN_DIGITS:
            current = current * 10 + _CN_DIGITS[ch] if current else _CN_DIGITS[ch]
        else:
            return None
    return total + current


def _arabic(match: re.Match) -> str:
    value = _chinese_number(match.group(1))
    return match.group(1) if value is None else str(value)


def normalise_place(text: str) -> str:
    """Fold a place name or address to the form landmarks are matched in."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _HASH_FOR_NUMBER.sub("号", text)  # "3#楼" is how buildings are numbered on signs
    text = _NUMBERED.sub(_arabic, text)
    # Spaces, punctuation and symbols carry no place: "钢都小区 3号楼。" is "钢都小区3号楼".
    return "".join(c for c in text if unicodedata.category(c)[0] not in "PZSC")


def strip_locative(key: str) -> str:
    """Cut one locative ending ("门口", "附近", ...) off a normalised key."""
    for suffix in LOCATIVE_SUFFIXES:
        if key.endswith(suffix) and len(key) - len(suffix) >= MIN_KEY_LENGTH:
            return key[: -len(suffix)]
    return key


def landmark_keys(name: str, aliases: list[str]) -> dict[str, int]:
    """Return every key a landmark is found by, with the best kind of each."""
    keys: dict[str, int] = {}

    def add(key: str, kind: int) -> None:
        if len(key) >= MIN_KEY_LENGTH and kind < keys.get(key, KIND_BASE + 1):
            keys[key] = kind

    for raw, kind in [(name, KIND_NAME), *((a, KIND_ALIAS) for a in aliases)]:
        key = normalise_place(raw)
        add(key, kind)
        add(strip_locative(key), KIND_BASE)
    return keys


def build_index(rows) -> LandmarkIndex:
    """Index landmark rows (id, name, aliases, latitude, longitude, grid_code)."""
    grouped: dict[str, list[_Entry]] = {}
    for row in rows:
        for key, kind in landmark_keys(row.name, row.aliases or []).items():
            grouped.setdefault(key, []).append(
                _Entry(kind, row.id, row.name, row.grid_code, row.latitude, row.longitude)
            )
    keys = {k: tuple(sorted(v, key=lambda e: (e.kind, e.landmark_id))) for k, v in grouped.items()}
    return LandmarkIndex(keys, tuple(sorted({len(k) for k in keys}, reverse=True)))


def _is_locative(rest: str) -> bool:
    return rest == "" or rest in LOCATIVE_SUFFIXES


def find_in_index(index: LandmarkIndex, text: str) -> Match | None:
    """Return the landmark whose longest key the text contains, or None.

    Ties on length go to the better kind (name, alias, cut form), then to the
    lowest landmark id; landmarks at different places tying for the best key
    share the confidence, so an ambiguous "汽车站" is not placed blindly.
    """
    folded = normalise_place(text)
    if not folded:
        return None
    for length in index.lengths:
        if length > len(folded):
            continue
        found: list[tuple[int, str]] = []
        for start in range(len(folded) - length + 1):
            key = folded[start : start + length]
            if key in index.keys:
                found.append((start, key))
        if not found:
            continue
        # Best kind first, then the earliest mention, then the lowest id: always the same answer.
        start, key = min(found, key=lambda f: (index.keys[f[1]][0].kind, f[0], f[1]))
        entries = index.keys[key]
        best = entries[0]
        places = {(round(e.latitude, 4), round(e.longitude, 4)) for e in entries}
        rest = folded[:start] + folded[start + length :]
        coverage = 1.0 if _is_locative(rest) else 0.6 + 0.4 * length / len(folded)
        confidence = _KIND_WEIGHT[best.kind] * coverage / len(places)
        return Match(
            landmark_id=best.landmark_id,
            name=best.name,
            grid_code=best.grid_code,
            latitude=best.latitude,
            longitude=best.longitude,
            matched=key,
            confidence=round(confidence, 3),
            candidates=len(places),
        )
    return None


# --- the per-process index -------------------------------------------------------------

_landmarks = Landmark.__table__
_LOAD = select(
    _landmarks.c.id,
    _landmarks.c.name,
    _landmarks.c.aliases,
    _landmarks.c.latitude,
    _landmarks.c.longitude,
    _landmarks.c.grid_code,
)
# Rebuilt when this process edits a landmark, and every 10 s to follow other processes.
_index = Refreshed(lambda conn: build_index(conn.execute(_LOAD).all()))


def _connection(conn_or_session: Connection | Session) -> Connection:
    if isinstance(conn_or_session, Session):
        return conn_or_session.connection()
    return conn_or_session


def match_landmark(conn_or_session: Connection | Session, text: str) -> Match | None:
    """Return the landmark a typed address or description names, or None."""
    if not text or not text.strip():
        return None
    return find_in_index(_index.get(_connection(conn_or_session)), text)


def place_by_landmark(session: Session, address: str) -> tuple[float, float, int] | None:
    """Return (lat, lon, landmark_id) when the address names a landmark confidently enough."""
    match = match_landmark(session, address)
    if match is None or match.confidence < PLACE_MIN_CONFIDENCE:
        return None
    return match.latitude, match.longitude, match.landmark_id


# --- keeping the list ------------------------------------------------------------------


def _clean_aliases(name: str, aliases: list[str] | None) -> list[str]:
    """Trim, drop empties and repeats (also of the name), keep the order typed."""
    seen = {normalise_place(name)}
    kept: list[str] = []
    for alias in aliases or []:
        alias = (alias or "").strip()[:MAX_NAME_LENGTH]
        key = normalise_place(alias)
        if len(key) >= MIN_KEY_LENGTH and key not in seen:
            seen.add(key)
            kept.append(alias)
    if len(kept) > MAX_ALIASES:
        raise LandmarkInvalid(
            f"at most {MAX_ALIASES} aliases", fields={"aliases": [f"at most {MAX_ALIASES}"]}
        )
    return kept


def _check_fields(name: str, latitude, longitude) -> str:
    fields: dict[str, list[str]] = {}
    name = (name or "").strip()
    if len(normalise_place(name)) < MIN_KEY_LENGTH:
        fields["name"] = [f"at least {MIN_KEY_LENGTH} characters besides punctuation"]
    elif len(name) > MAX_NAME_LENGTH:
        fields["name"] = [f"at most {MAX_NAME_LENGTH} characters"]
    for field, value, limit in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or abs(value) > limit
        ):
            fields[field] = [f"a number between -{limit} and {limit}"]
    if fields:
        raise LandmarkInvalid("the landmark is not valid", fields=fields)
    return name


def _grid_path(session: Session, grid_code: str) -> str | None:
    """Return the path of a code in the active layer, or None."""
    return session.scalar(
        select(Grid.path)
        .join(GridLayer, GridLayer.id == Grid.layer_id)
        .where(GridLayer.active.is_(True), Grid.code == grid_code)
    )


def _editable(session: Session, viewer: Viewer, landmark_id: int) -> Landmark:
    """Return a landmark in the viewer's grids, or NotFound (also when it exists)."""
    landmark = session.get(Landmark, landmark_id)
    if landmark is None or not viewer.can_see(_grid_path(session, landmark.grid_code)):
        raise NotFound("no such landmark")
    return landmark


def _check_grid(session: Session, viewer: Viewer, grid_code: str) -> None:
    """Refuse a grid that is not in the active layer or not in the viewer's scope."""
    path = _grid_path(session, grid_code)
    if path is None or not viewer.can_see(path):
        raise LandmarkInvalid(
            "not a grid you look after", fields={"grid_code": ["not a grid you look after"]}
        )


def list_landmarks(
    session: Session, viewer: Viewer, *, grid_code: str | None = None, query: str = ""
) -> list[Landmark]:
    """Return the landmarks of the grids the viewer covers, by grid and name."""
    stmt = select(Landmark, Grid.path).outerjoin(
        Grid,
        (Grid.code == Landmark.grid_code)
        & Grid.layer_id.in_(select(GridLayer.id).where(GridLayer.active.is_(True))),
    )
    if grid_code:
        stmt = stmt.where(Landmark.grid_code == grid_code)
    rows = session.execute(stmt.order_by(Landmark.grid_code, Landmark.name, Landmark.id)).all()
    folded = normalise_place(query)
    return [
        lm
        for lm, path in rows
        if viewer.can_see(path)
        and (not folded or any(folded in k for k in landmark_keys(lm.name, lm.aliases or [])))
    ]


def create_landmark(
    session: Session,
    viewer: Viewer,
    *,
    grid_code: str,
    name: str,
    latitude: float,
    longitude: float,
    aliases: list[str] | None = None,
) -> Landmark:
    """Add a named place to one of the viewer's grids (flushes, never commits)."""
    name = _check_fields(name, latitude, longitude)
    _check_grid(session, viewer, grid_code)
    landmark = Landmark(
        grid_code=grid_code,
        name=name,
        aliases=_clean_aliases(name, aliases),
        latitude=float(latitude),
        longitude=float(longitude),
        created_by_id=viewer.staff_id,
    )
    session.add(landmark)
    session.flush()
    _index.clear()
    return landmark


def update_landmark(
    session: Session,
    viewer: Viewer,
    landmark_id: int,
    *,
    name: str,
    latitude: float,
    longitude: float,
    aliases: list[str] | None = None,
    grid_code: str | None = None,
) -> Landmark:
    """Change a landmark of the viewer's grids; moving it needs the new grid in scope too."""
    landmark = _editable(session, viewer, landmark_id)
    name = _check_fields(name, latitude, longitude)
    if grid_code and grid_code != landmark.grid_code:
        _check_grid(session, viewer, grid_code)
        landmark.grid_code = grid_code
    landmark.name = name
    landmark.aliases = _clean_aliases(name, aliases)
    landmark.latitude, landmark.longitude = float(latitude), float(longitude)
    session.flush()
    _index.clear()
    return landmark


def delete_landmark(session: Session, viewer: Viewer, landmark_id: int) -> None:
    """Remove a landmark of the viewer's grids."""
    session.delete(_editable(session, viewer, landmark_id))
    session.flush()
    _index.clear()


def clear_landmark_cache() -> None:
    """Forget the cached index (tests, or after restoring a database in place)."""
    _index.clear()
