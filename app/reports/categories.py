"""The eleven tip categories of CONTRACT.md with names and response-time targets."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from app.refcache import Refreshed
from app.reports.models import Category

_table = Category.__table__
# Intake reads categories on every tip; edits reach other processes within the ttl.
_active = Refreshed(
    lambda conn: {
        row.code: row
        for row in conn.execute(
            select(_table.c.id, _table.c.code, _table.c.severity).where(_table.c.active.is_(True))
        )
    }
)

# The names of every category (inactive ones too: old tips keep theirs), for lists that
# name many tips at once (the queue) without a join per page.
_names = Refreshed(
    lambda conn: {
        row.id: (row.code, row.name_zh, row.name_en)
        for row in conn.execute(
            select(_table.c.id, _table.c.code, _table.c.name_zh, _table.c.name_en)
        )
    }
)

# code, Chinese, English, severity (4 urgent .. 1 low), minutes to acknowledge, to resolve
DEFAULT_CATEGORIES = (
    ("robbery_violence", "抢劫/暴力", "Robbery or violence", 4, 3, 120),
    ("fire_hazard", "火灾隐患", "Fire hazard", 4, 3, 120),
    ("missing_person", "人员走失", "Missing person", 4, 3, 240),
    ("theft", "盗窃", "Theft", 3, 10, 1440),
    ("drugs_gambling", "涉毒涉赌", "Drugs or gambling", 3, 15, 2880),
    ("suspicious", "可疑情况", "Suspicious activity", 2, 15, 1440),
    ("traffic", "交通隐患", "Traffic hazard", 2, 15, 720),
    ("fraud", "诈骗", "Fraud", 2, 30, 2880),
    ("dispute", "矛盾纠纷", "Dispute", 2, 30, 1440),
    ("public_facility", "公共设施损坏", "Damaged public facility", 1, 60, 4320),
    ("other", "其他", "Other", 2, 30, 2880),
)


def seed_categories(session: Session) -> int:
    """Insert missing default categories (existing ones, perhaps edited, are left alone)."""
    have = set(session.scalars(select(Category.code)))
    added = 0
    for order, (code, zh, en, sev, ack, res) in enumerate(DEFAULT_CATEGORIES):
        if code not in have:
            session.add(
                Category(
                    code=code,
                    name_zh=zh,
                    name_en=en,
                    severity=sev,
                    ack_minutes=ack,
                    resolve_minutes=res,
                    sort_order=order,
                )
            )
            added += 1
    session.flush()
    _active.clear()
    _names.clear()
    return added


def list_categories(session: Session) -> list[Category]:
    """Return the active categories in display order."""
    return list(
        session.scalars(
            select(Category).where(Category.active.is_(True)).order_by(Category.sort_order)
        )
    )


def active_category(source: Connection | Session, code: str) -> Row | None:
    """Return (id, code, severity) of an active category, from the per-process cache."""
    return _active.get(source).get(code)


def category_names(source: Connection | Session, ids: set[int]) -> dict[int, tuple[str, str, str]]:
    """Return {id: (code, Chinese, English)} covering `ids`, reloading once for a new one."""
    names = _names.get(source)
    if not ids <= names.keys():  # a category another process added since the cache was filled
        _names.clear()
        names = _names.get(source)
    return names
