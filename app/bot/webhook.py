"""POST /telegram/webhook: check the secret, store the sanitised update, answer 200 after commit.

Telegram repeats an update until it gets a 2xx, so the row is committed (in the
request's after_request hook) before the 200 leaves; a duplicate update_id is a
no-op. The body is never logged. `tipline bot` drains the inbox.
"""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request

from app.bot.inbox import store_updates
from app.bot.updates import sanitise_update
from app.security import same
from app.webapp import db, services

bp = Blueprint("telegram", __name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name, not a secret)
MAX_UPDATE_BYTES = 1024 * 1024  # an update is a few KB; files never come in the body


@bp.post("/telegram/webhook")
def webhook():
    """Store one update from Telegram."""
    secret = services().settings.telegram_webhook_secret
    if not secret:
        abort(404)  # polling mode: there is no webhook
    if not same(request.headers.get(SECRET_HEADER, ""), secret):
        abort(403)
    if (request.content_length or 0) > MAX_UPDATE_BYTES:
        abort(413)
    payload = sanitise_update(request.get_json(silent=True, force=True))
    if payload is None:
        abort(400)
    store_updates(db(), [payload])
    return jsonify({"ok": True})
