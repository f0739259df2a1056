"""The one message catalogue: Chinese (Simplified) first, English second.

Every text a person reads (bot replies, notifications, admin pages, the form)
comes from here. Messages live in JSON files beside this module, one per area
(`notifications.json`, `admin.json`, `bot.json`, ...), each mapping a key to
{"zh": ..., "en": ...}; keys are unique across files.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"
_HERE = Path(__file__).resolve().parent


@cache
def catalogue() -> dict[str, dict[str, str]]:
    """Load every message file once; a key defined twice is a bug caught at start-up."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(_HERE.glob("*.json")):
        for key, texts in json.loads(path.read_text(encoding="utf-8")).items():
            if key in merged:
                raise ValueError(f"message {key!r} is defined twice ({path.name})")
            if DEFAULT_LOCALE not in texts:
                raise ValueError(f"message {key!r} has no Chinese text ({path.name})")
            merged[key] = texts
    return merged


def normalise_locale(value: str | None) -> str:
    """Map zh-CN, zh_Hans, en-US ... to a supported locale, Chinese by default."""
    value = (value or "").lower()
    return "en" if value.startswith("en") else DEFAULT_LOCALE


def t(key: str, locale: str | None = DEFAULT_LOCALE, /, **params) -> str:
    """Return the message in the locale (falling back to Chinese), formatted with params."""
    texts = catalogue()[key]
    text = texts.get(normalise_locale(locale)) or texts[DEFAULT_LOCALE]
    return text.format(**params) if params else text
