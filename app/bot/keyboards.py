"""Reply markups as plain Bot API dicts: stored in outbox rows, sent as they are."""

from __future__ import annotations

from app.i18n import LOCALES, t

AGO_MINUTES = (0, 10, 30, 60, 180)
MAIN_BUTTONS = ("report", "mytips", "help")


def inline(rows: list[list[tuple[str, str]]]) -> dict:
    """Build an inline keyboard from rows of (label, callback data)."""
    return {
        "inline_keyboard": [
            [{"text": label, "callback_data": data} for label, data in row] for row in rows
        ]
    }


def main_keyboard(locale: str) -> dict:
    """The persistent keyboard: report, my tips, help."""
    return {
        "keyboard": [
            [{"text": t("bot.button.report", locale)}],
            [{"text": t("bot.button.mytips", locale)}, {"text": t("bot.button.help", locale)}],
        ],
        "resize_keyboard": True,
        "is_persistent": True,
    }


def main_button(text: str) -> str | None:
    """Return which main button a text is (in any language), or None."""
    for name in MAIN_BUTTONS:
        if any(text == t(f"bot.button.{name}", locale) for locale in LOCALES):
            return name
    return None


def location_keyboard(locale: str) -> dict:
    """A one-time keyboard with the share-location button."""
    return {
        "keyboard": [[{"text": t("bot.button.share_location", locale), "request_location": True}]],
        "resize_keyboard": True,
        "one_time_keyboard": True,
    }


def category_keyboard(categories: list[tuple[str, str]], locale: str) -> dict:
    """Categories (code, name) two to a row, then cancel."""
    buttons = [(name, f"cat:{code}") for code, name in categories]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    return inline([*rows, [(t("bot.button.cancel", locale), "sum:cancel")]])


def photos_keyboard(locale: str, *, count: int, editing: bool) -> dict:
    """Done (or skip, with no photos yet); remove-all when editing a draft that has some."""
    first = ("bot.button.done", "photos:done") if count else ("bot.button.skip", "photos:skip")
    rows = [[(t(first[0], locale), first[1])]]
    if editing and count:
        rows.append([(t("bot.button.clear_photos", locale), "photos:clear")])
    return inline(rows)


def summary_keyboard(locale: str) -> dict:
    """Confirm / edit / cancel, and when it happened."""
    ago = [(t(f"bot.ago.{m}", locale), f"ago:{m}") for m in AGO_MINUTES]
    return inline(
        [
            [(t("bot.button.confirm", locale), "sum:confirm")],
            [
                (t("bot.button.edit", locale), "sum:edit"),
                (t("bot.button.cancel", locale), "sum:cancel"),
            ],
            ago[:3],
            ago[3:],
        ]
    )


def edit_keyboard(locale: str) -> dict:
    """Which part of the draft to change."""
    parts = ("category", "description", "photos", "location")
    buttons = [(t(f"bot.button.edit_{p}", locale), f"edit:{p}") for p in parts]
    return inline([buttons[:2], buttons[2:], [(t("bot.button.back", locale), "edit:back")]])


def language_keyboard() -> dict:
    """中文 / English."""
    return inline([[(t("bot.button.lang_zh"), "lang:zh"), (t("bot.button.lang_en"), "lang:en")]])


def acknowledge_keyboard(ref: str, locale: str) -> dict:
    """The inline button on a staff alert that acknowledges the tip."""
    return inline([[(t("bot.button.acknowledge", locale), f"ack:{ref}")]])
