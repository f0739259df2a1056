"""The Bot API client: python-telegram-bot's Bot, with raw updates and quiet logs.

Updates are fetched raw (not parsed into telegram.Update): PTB's own get_updates
parses the whole batch, and one malformed update then stops the offset forever.
The bot stores each raw update, sanitised, and reads it itself.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from telegram import Bot
from telegram.request import HTTPXRequest

from app.bot.updates import ALLOWED_UPDATES
from app.config import Settings

# httpx logs every URL (the token is in it) at INFO; PTB logs call parameters (tip
# text) at DEBUG. Neither may reach a log line, whatever the root level is.
_LOUD_LOGGERS = ("httpx", "httpcore", "telegram", "hpack")


def quiet_http_logs() -> None:
    """Keep the HTTP client's and PTB's own logging to warnings and above."""
    for name in _LOUD_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class TelegramClient(Bot):
    """PTB's Bot plus the two raw calls the inbox-driven bot needs."""

    async def raw_updates(self, offset: int | None, timeout: int) -> list:
        """Long-poll getUpdates and return the updates as JSON (a list of dicts)."""
        params = {"timeout": timeout, "allowed_updates": list(ALLOWED_UPDATES)}
        if offset is not None:
            params["offset"] = offset
        result = await self._post("getUpdates", params, read_timeout=timeout + 10)
        return result if isinstance(result, list) else []

    async def call(self, method: str, params: dict) -> Any:
        """Call a Bot API method with JSON-able params; return the raw result."""
        return await self._post(method, dict(params))

    async def download(self, file_id: str) -> bytes:
        """Fetch a file's bytes (getFile, then the file URL)."""
        file = await self.get_file(file_id)
        return bytes(await file.download_as_bytearray())


def make_client(settings: Settings) -> TelegramClient:
    """Build the client on the configured Bot API base URLs."""
    quiet_http_logs()
    # PTB 22 is moving time periods (retry_after...) from int to timedelta and warns on
    # every use of the old form; this is its documented opt-in to the new one.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    return TelegramClient(
        settings.telegram_bot_token,
        base_url=settings.telegram_api_base_url,
        base_file_url=settings.telegram_file_base_url,
        request=HTTPXRequest(connection_pool_size=32, read_timeout=15, media_write_timeout=30),
        get_updates_request=HTTPXRequest(
            connection_pool_size=2, read_timeout=settings.bot_poll_timeout + 10
        ),
    )
