"""Turn an outbox row (template name + params) into the plain text its recipient reads."""

from __future__ import annotations

from app.i18n import catalogue, t

# Params that carry a code from a vocabulary, shown by name: param -> catalogue key prefix.
_VOCABULARY = {
    "status": "status.",
    "priority": "priority.",
    "category": "notify.category.",
}


def _named(prefix: str, value, locale: str):
    """Return the catalogue name of a code, or the code itself when it has none."""
    key = f"{prefix}{value}"
    return t(key, locale) if isinstance(value, str) and key in catalogue() else value


def render_message(template: str, params: dict, locale: str) -> str:
    """Return the message text in the locale; plain text, since the bot sends without parse mode.

    Raises KeyError for an unknown template or a missing parameter, so the sender
    fails that one row instead of sending half a message.
    """
    key = f"notify.{template}"
    if key not in catalogue():
        raise KeyError(f"unknown outbox template {template!r}")
    values = {
        name: _named(_VOCABULARY[name], value, locale) if name in _VOCABULARY else value
        for name, value in (params or {}).items()
    }
    return t(key, locale, **values)
