"""A local fake of the Telegram Bot API, and fake users who talk to the bot through it.

It speaks the wire format python-telegram-bot uses: every method is a POST to
/bot<token>/<method> with form-encoded parameters (JSON-encoded values except
plain strings), answered with {"ok": true, "result": ...} or {"ok": false,
"error_code", "description", "parameters": {"retry_after"}} and the same HTTP
status; files are GETs under /file/bot<token>/<path>. Methods: getMe,
deleteWebhook, getUpdates (offsets, long polling), sendMessage, getFile + the
download, answerCallbackQuery, editMessageText, deleteMessage. It serves 429s and
403s on demand (`fail` hook, `blocked_chats`) and records every call with its time.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_JSON_PARAMS = {
    "chat_id",
    "message_id",
    "offset",
    "limit",
    "timeout",
    "allowed_updates",
    "reply_markup",
    "show_alert",
    "link_preview_options",
    "drop_pending_updates",
}


@dataclass
class Call:
    """One API call as the fake saw it."""

    method: str
    params: dict
    at: float
    status: int = 200


@dataclass
class Sent:
    """A message the bot sent (and its current text, after any edits)."""

    message_id: int
    chat_id: int
    text: str
    reply_markup: dict | None
    params: dict
    at: float
    edits: list = field(default_factory=list)
    deleted: bool = False

    def buttons(self) -> list[dict]:
        """Return the inline buttons, flattened."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [b for row in rows for b in row]


class FakeTelegram:
    """The fake Bot API server (a ThreadingHTTPServer on 127.0.0.1)."""

    def __init__(self, token: str | None = None):
        self.token = token or f"{secrets.randbelow(10**9)}:{secrets.token_urlsafe(20)}"
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.updates: list[dict] = []
        self.confirmed = 0  # the highest offset the bot has confirmed
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(100_000)
        self._file_ids = itertools.count(1)
        self.calls: list[Call] = []
        self.sent: list[Sent] = []
        self.by_id: dict[int, Sent] = {}
        self.by_chat: dict[int, list[Sent]] = collections.defaultdict(list)
        # One condition per chat, so hundreds of waiting users are not all woken per call.
        self._chat_conds: dict[int, threading.Condition] = {}
        self.files: dict[str, bytes] = {}
        self.claimed_sizes: dict[str, int] = {}
        self.blocked_chats: set[int] = set()
        # fail(method, params) -> None, or (status, description, retry_after | None)
        self.fail: Callable[[str, dict], tuple | None] | None = None
        self.server: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        fake = self

        class Handler(_Handler):
            telegram = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            with self.cond:
                self.cond.notify_all()
            self.server.shutdown()
            self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- the test's side ---------------------------------------------------------------------

    def push(self, update: dict, *, update_id: int | None = None) -> int:
        """Queue an update for getUpdates (a fresh update_id unless one is given)."""
        with self.cond:
            uid = update_id if update_id is not None else next(self._update_ids)
            self.updates.append({"update_id": uid, **update})
            self.cond.notify_all()
        return uid

    def push_raw(self, update: dict) -> None:
        """Queue an update exactly as given (malformed ones too)."""
        with self.cond:
            self.updates.append(update)
            self.cond.notify_all()

    def next_update_id(self) -> int:
        """Draw an update_id (Telegram's grow; an update below the offset is never delivered)."""
        return next(self._update_ids)

    def new_message_id(self) -> int:
        return next(self._message_ids)

    def add_file(self, data: bytes, *, claimed_size: int | None = None) -> str:
        """Make a downloadable file; claimed_size is what Telegram would report."""
        file_id = f"F{next(self._file_ids):06d}-{secrets.token_hex(4)}"
        self.files[file_id] = data
        if claimed_size is not None:
            self.claimed_sizes[file_id] = claimed_size
        return file_id

    def messages_to(self, chat_id: int) -> list[Sent]:
        with self.cond:
            return list(self.by_chat.get(chat_id, ()))

    def chat_cond(self, chat_id: int) -> threading.Condition:
        """The condition notified when something changes in this chat."""
        with self.cond:
            if chat_id not in self._chat_conds:
                self._chat_conds[chat_id] = threading.Condition(self.lock)
            return self._chat_conds[chat_id]

    def wait_in_chat(self, chat_id: int, predicate, timeout: float = 20.0):
        """Wait until predicate() is truthy, woken only by this chat's messages and edits."""
        cond = self.chat_cond(chat_id)
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the bot did not do what was expected in time")
                cond.wait(min(left, 1.0))

    def _chat_changed(self, chat_id) -> None:
        cond = self._chat_conds.get(chat_id)
        if cond is not None:
            cond.notify_all()

    def calls_of(self, method: str) -> list[Call]:
        with self.cond:
            return [c for c in self.calls if c.method == method]

    def wait(self, predicate: Callable[[], object], timeout: float = 20.0):
        """Wait until predicate() is truthy (re-checked on every call the bot makes)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the bot did not do what was expected in time")
                self.cond.wait(min(left, 0.2))

    def pending_updates(self) -> int:
        with self.cond:
            return sum(1 for u in self.updates if _uid(u) >= self.confirmed)

    # --- the bot's side ----------------------------------------------------------------------

    def handle(self, method: str, params: dict) -> tuple[int, dict]:
        """Answer one API call: (HTTP status, JSON body)."""
        call = Call(method, params, time.monotonic())
        with self.cond:
            self.calls.append(call)
        failure = self.fail(method, params) if self.fail else None
        if (
            failure is None
            and method == "sendMessage"
            and _int(params.get("chat_id")) in (self.blocked_chats)
        ):
            failure = (403, "Forbidden: bot was blocked by the user", None)
        if failure is not None:
            status, description, retry_after = failure
            call.status = status
            body = {"ok": False, "error_code": status, "description": description}
            if retry_after is not None:
                body["parameters"] = {"retry_after": retry_after}
            with self.cond:
                self.cond.notify_all()
            return status, body
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        try:
            result = handler(params)
        except _ApiError as exc:
            call.status = exc.status
            return exc.status, {"ok": False, "error_code": exc.status, "description": exc.text}
        finally:
            with self.cond:
                self.cond.notify_all()
        return 200, {"ok": True, "result": result}

    def _m_getMe(self, params):
        uid = int(self.token.split(":")[0])
        return {"id": uid, "is_bot": True, "first_name": "Tipline", "username": "tipline_test_bot"}

    def _m_deleteWebhook(self, params):
        return True

    def _m_getUpdates(self, params):
        offset = _int(params.get("offset")) or 0
        timeout = min(float(_int(params.get("timeout")) or 0), 5.0)
        deadline = time.monotonic() + timeout
        with self.cond:
            if offset:
                self.confirmed = max(self.confirmed, offset)
                self.updates = [u for u in self.updates if _uid(u) >= offset]
            while True:
                ready = [u for u in self.updates if _uid(u) >= offset]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    return ready[: _int(params.get("limit")) or 100]
                self.cond.wait(min(left, 0.5))

    def _m_sendMessage(self, params):
        chat_id = _int(params["chat_id"])
        text = params.get("text", "")
        if not text or len(text) > 4096:
            raise _ApiError(400, "Bad Request: message text is empty or too long")
        msg = Sent(
            self.new_message_id(),
            chat_id,
            text,
            params.get("reply_markup"),
            params,
            time.monotonic(),
        )
        with self.cond:
            self.sent.append(msg)
            self.by_id[msg.message_id] = msg
            self.by_chat[chat_id].append(msg)
            self._chat_changed(chat_id)
        return {
            "message_id": msg.message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "text": text,
        }

    def _m_editMessageText(self, params):
        msg = self.by_id.get(_int(params.get("message_id")))
        if msg is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        with self.cond:
            msg.edits.append(msg.text)
            msg.text = params["text"]
            msg.reply_markup = params.get("reply_markup")
            self._chat_changed(msg.chat_id)
        return {"message_id": msg.message_id, "date": int(time.time()), "text": msg.text}

    def _m_deleteMessage(self, params):
        msg = self.by_id.get(_int(params.get("message_id")))
        if msg is not None:
            msg.deleted = True
        return True

    def _m_answerCallbackQuery(self, params):
        return True

    def _m_getFile(self, params):
        file_id = params.get("file_id")
        if file_id not in self.files:
            raise _ApiError(
                400, "Bad Request: wrong file_id or the file is temporarily unavailable"
            )
        size = self.claimed_sizes.get(file_id, len(self.files[file_id]))
        if size > 20 * 1024 * 1024:
            raise _ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": "U" + file_id,
            "file_size": size,
            "file_path": f"files/{file_id}.bin",
        }


class _ApiError(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


def _uid(update: dict) -> int:
    value = update.get("update_id") if isinstance(update, dict) else None
    return value if isinstance(value, int) else 0


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Handler(BaseHTTPRequestHandler):
    telegram: FakeTelegram
    disable_nagle_algorithm = True  # else every call stalls ~40 ms on delayed ACKs
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)  # fails only when the bot stopped during a long poll

    def _json(self, status: int, body: dict) -> None:
        self._reply(status, json.dumps(body, ensure_ascii=False).encode(), "application/json")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        prefix = f"/bot{self.telegram.token}/"
        path = urllib.parse.unquote(self.path)
        if not path.startswith(prefix):
            self._json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        method = path[len(prefix) :]
        params = _parse(raw, self.headers.get("Content-Type", ""))
        status, body = self.telegram.handle(method, params)
        self._json(status, body)

    def do_GET(self):
        prefix = f"/file/bot{self.telegram.token}/files/"
        path = urllib.parse.unquote(self.path)
        if not path.startswith(prefix):
            self._json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        file_id = path[len(prefix) :].removesuffix(".bin")
        data = self.telegram.files.get(file_id)
        if data is None:
            self._json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        self._reply(200, data, "application/octet-stream")


def _parse(raw: bytes, content_type: str) -> dict:
    """Decode form-encoded (or JSON) parameters; JSON-typed ones are decoded again."""
    if content_type.startswith("application/json"):
        return json.loads(raw or b"{}")
    params = {
        k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode(), keep_blank_values=True).items()
    }
    for name in _JSON_PARAMS & params.keys():
        with contextlib.suppress(ValueError):
            params[name] = json.loads(params[name])
    return params


# --- fake users ------------------------------------------------------------------------------


class FakeUser:
    """A Telegram user in a private chat with the bot, driving it as a person would."""

    _ids = itertools.count(700_000_001)

    def __init__(self, tg: FakeTelegram, user_id: int | None = None, language_code: str = "zh"):
        self.tg = tg
        self.id = user_id or next(self._ids)
        self.chat_id = self.id
        self.language_code = language_code
        self.seen = 0  # messages to this chat already looked at

    # --- sending -------------------------------------------------------------------------------

    def message(self, **fields) -> dict:
        """A message from this user; the names and username are canaries that must not be kept."""
        return {
            "message_id": self.tg.new_message_id(),
            "date": int(time.time()),
            "chat": {"id": self.chat_id, "type": "private", "first_name": "CanaryFirst"},
            "from": {
                "id": self.id,
                "is_bot": False,
                "first_name": "CanaryFirst",
                "last_name": "CanaryLast",
                "username": "canary_username",
                "language_code": self.language_code,
            },
            **fields,
        }

    def send(self, update_id: int | None = None, **fields) -> int:
        return self.tg.push({"message": self.message(**fields)}, update_id=update_id)

    def text(self, text: str) -> int:
        return self.send(text=text)

    def command(self, name: str, args: str = "") -> int:
        text = f"/{name}" + (f" {args}" if args else "")
        entity = {"type": "bot_command", "offset": 0, "length": len(name) + 1}
        return self.send(text=text, entities=[entity])

    def photo(
        self,
        data: bytes,
        caption: str | None = None,
        group: str | None = None,
        claimed_size: int | None = None,
    ) -> int:
        """Send a photo: Telegram lists a small preview first, the largest size last."""
        thumb = self.tg.add_file(b"not used")
        file_id = self.tg.add_file(data, claimed_size=claimed_size)
        size = claimed_size or len(data)
        sizes = [
            {
                "file_id": thumb,
                "file_unique_id": "t" + thumb,
                "width": 90,
                "height": 68,
                "file_size": 8,
            },
            {
                "file_id": file_id,
                "file_unique_id": "u" + file_id,
                "width": 1280,
                "height": 960,
                "file_size": size,
            },
        ]
        fields: dict = {"photo": sizes}
        if caption is not None:
            fields["caption"] = caption
        if group is not None:
            fields["media_group_id"] = group
        return self.send(**fields)

    def document(
        self,
        data: bytes,
        *,
        mime: str = "image/jpeg",
        name: str = "IMG_0001.jpg",
        caption: str | None = None,
        claimed_size: int | None = None,
    ) -> int:
        file_id = self.tg.add_file(data, claimed_size=claimed_size)
        doc = {
            "file_id": file_id,
            "file_unique_id": "u" + file_id,
            "file_name": name,
            "mime_type": mime,
            "file_size": claimed_size or len(data),
        }
        fields: dict = {"document": doc}
        if caption is not None:
            fields["caption"] = caption
        return self.send(**fields)

    def voice(self, data: bytes, duration: int = 5) -> int:
        file_id = self.tg.add_file(data)
        voice = {
            "file_id": file_id,
            "file_unique_id": "u" + file_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        return self.send(voice=voice)

    def location(
        self,
        lat: float,
        lon: float,
        *,
        live_period: int | None = None,
        accuracy: float | None = None,
    ) -> dict:
        """Share a position; returns the message (its id is needed to edit a live location)."""
        loc = {"latitude": lat, "longitude": lon}
        if live_period:
            loc["live_period"] = live_period
        if accuracy is not None:
            loc["horizontal_accuracy"] = accuracy
        msg = self.message(location=loc)
        self.tg.push({"message": msg})
        return msg

    def move_live_location(self, message: dict, lat: float, lon: float) -> int:
        """Telegram's edited_message for a live location that moved."""
        edited = {
            **message,
            "edit_date": int(time.time()),
            "location": {**message["location"], "latitude": lat, "longitude": lon},
        }
        return self.tg.push({"edited_message": edited})

    def press(self, label: str, *, message: Sent | None = None, timeout: float = 20.0) -> int:
        """Press an inline button (by its text or callback data), waiting for it to be shown."""

        def button():
            candidates = [message] if message else reversed(self.tg.messages_to(self.chat_id))
            for msg in candidates:
                for b in msg.buttons():
                    if label in (b["text"], b.get("callback_data")):
                        return msg, b
            return None

        try:
            msg, b = self.tg.wait_in_chat(self.chat_id, button, timeout)
        except AssertionError:
            raise AssertionError(f"no button {label!r} in the chat") from None
        sender = {
            "id": self.id,
            "is_bot": False,
            "first_name": "CanaryFirst",
            "language_code": self.language_code,
        }
        shown = {
            "message_id": msg.message_id,
            "date": int(time.time()),
            "chat": {"id": self.chat_id, "type": "private"},
            "text": msg.text,
        }
        query = {
            "id": secrets.token_hex(8),
            "from": sender,
            "chat_instance": "1",
            "message": shown,
            "data": b["callback_data"],
        }
        return self.tg.push({"callback_query": query})

    # --- reading -------------------------------------------------------------------------------

    def replies(self) -> list[Sent]:
        return self.tg.messages_to(self.chat_id)

    def wait_reply(self, contains: str | None = None, timeout: float = 20.0) -> Sent:
        """Wait for the next message to this chat (containing the text, if given) and return it."""

        def found():
            msgs = self.tg.messages_to(self.chat_id)
            for i in range(self.seen, len(msgs)):
                if contains is None or contains in msgs[i].text:
                    self.seen = i + 1
                    return msgs[i]
            return None

        try:
            return self.tg.wait_in_chat(self.chat_id, found, timeout)
        except AssertionError:
            got = [m.text[:80] for m in self.tg.messages_to(self.chat_id)[self.seen :]]
            raise AssertionError(f"no reply containing {contains!r}; got {got}") from None
