"""Show what reporters typed exactly, but safely: escaped, with invisible characters made visible.

Zero-width and bidirectional control characters (Unicode category Cf) could
hide text or reverse how a line reads (an RTL override turns "gpj.exe" into
"exe.jpg"), so each is shown as a small visible code instead of acting.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from markupsafe import Markup, escape

from app.i18n import t
from app.reports.clock import LOCAL_TZ


def _control_mark(ch: str) -> str:
    return f'<span class="ctl" title="U+{ord(ch):04X}">U+{ord(ch):04X}</span>'


def show_text(value: str | None) -> Markup:
    """Escape text for HTML and replace format/control characters with visible codes."""
    if not value:
        return Markup("")
    out: list[str] = []
    for ch in value:
        category = unicodedata.category(ch)
        if ch in "\n\t":
            out.append(ch)
        elif category in ("Cf", "Cc", "Co", "Cs") or ch in "\u2028\u2029":
            out.append(_control_mark(ch))
        else:
            out.append(str(escape(ch)))
    # Every piece is escaped above or is our own fixed markup.
    return Markup("".join(out))  # noqa: S704


def preview(value: str | None, length: int = 120) -> str:
    """Return the first `length` characters on one line (escaped later by the template)."""
    text = " ".join((value or "").split())
    return text if len(text) <= length else text[: length - 1] + "…"


def local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format a UTC time in the city's time zone (China, UTC+8)."""
    return "" if value is None else value.astimezone(LOCAL_TZ).strftime(fmt)


def from_iso(value: str | None) -> dt.datetime | None:
    """Read an ISO 8601 time back (the audit trail hands times over as text)."""
    return dt.datetime.fromisoformat(value) if value else None


def duration(seconds: int | None, locale: str) -> str:
    """Say a clock's time (left or overdue) in whole minutes, or hours past two hours."""
    if seconds is None:
        return ""
    minutes = abs(seconds) // 60
    if minutes >= 120:
        return t("admin.clock.hours", locale, n=minutes // 60)
    return t("admin.clock.minutes", locale, n=minutes)
