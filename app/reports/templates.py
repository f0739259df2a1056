"""Response templates: canned messages to reporters per status, in Chinese and English.

The defaults come from the message catalogue (`template.<code>.title/body` in
app/i18n/notifications.json) and are copied into ResponseTemplate rows, which
admins may then edit. Bodies may use {ref}; any other placeholder is left as is.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.i18n import DEFAULT_LOCALE, LOCALES, normalise_locale, t
from app.reports.models import ResponseTemplate

# code -> the reporter-side status it goes with (None: any status)
DEFAULT_TEMPLATES: dict[str, str | None] = {
    "received": "received",
    "in_handling": "in_handling",
    "need_more_info": None,
    "closed_confirmed": "closed",
    "closed_unfounded": "closed",
    "closed_duplicate": "closed",
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class UnknownTemplate(DomainError):
    """No response template has this code."""

    code = "unknown_template"
    status = 422


def seed_response_templates(session: Session) -> int:
    """Insert the default templates that are missing (edited ones are left alone)."""
    have = {
        tuple(r) for r in session.execute(select(ResponseTemplate.code, ResponseTemplate.locale))
    }
    added = 0
    for code, status in DEFAULT_TEMPLATES.items():
        for locale in LOCALES:
            if (code, locale) in have:
                continue
            session.add(
                ResponseTemplate(
                    code=code,
                    status=status,
                    locale=locale,
                    title=t(f"template.{code}.title", locale),
                    body=t(f"template.{code}.body", locale),
                )
            )
            added += 1
    session.flush()
    return added


def list_templates(session: Session, locale: str | None) -> list[dict]:
    """Return every template in the locale (Chinese where no translation exists), by code."""
    wanted = normalise_locale(locale)
    rows = session.scalars(
        select(ResponseTemplate).where(ResponseTemplate.locale.in_([wanted, DEFAULT_LOCALE]))
    ).all()
    best: dict[str, ResponseTemplate] = {}
    for row in rows:
        if row.code not in best or row.locale == wanted:
            best[row.code] = row
    return [
        {"code": r.code, "status": r.status, "locale": r.locale, "title": r.title, "body": r.body}
        for r in sorted(best.values(), key=lambda r: r.code)
    ]


def fill(body: str, params: dict) -> str:
    """Replace {name} with params[name]; unknown names stay, so an edited template never breaks."""
    return _PLACEHOLDER.sub(
        lambda m: str(params[m.group(1)]) if m.group(1) in params else m.group(0), body
    )


def render_template(session: Session, code: str, locale: str | None, **params) -> str:
    """Return a template's body in the locale (else Chinese), filled with params."""
    wanted = normalise_locale(locale)
    rows = {
        r.locale: r
        for r in session.scalars(
            select(ResponseTemplate).where(
                ResponseTemplate.code == code,
                ResponseTemplate.locale.in_([wanted, DEFAULT_LOCALE]),
            )
        )
    }
    row = rows.get(wanted) or rows.get(DEFAULT_LOCALE)
    if row is None:
        raise UnknownTemplate("no such response template", fields={"template": ["unknown"]})
    return fill(row.body, params)
