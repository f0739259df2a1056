"""The message catalogue: Chinese first, English second, no key twice."""

from __future__ import annotations

from app.i18n import catalogue, normalise_locale, t


def test_every_message_has_chinese_and_english():
    for key, texts in catalogue().items():
        assert texts.get("zh"), key
        assert texts.get("en"), key


def test_locale_falls_back_to_chinese():
    assert t("status.received") == "已受理"
    assert t("status.received", "en-GB") == "Received"
    assert t("status.received", "fr") == "已受理"
    assert normalise_locale(None) == "zh"
