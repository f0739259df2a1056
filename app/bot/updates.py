"""Telegram updates: cut down to what the bot needs before storing, then read as plain values.

`sanitise_update` runs before the inbox insert, so what is never needed is never
stored: names, usernames, phone numbers, contact cards, forward origins, file
names, replied-to messages, and the coordinates of live-location updates (the
bot keeps the first position a reporter shares, never a track). It keeps an
allow-list of fields, type-checked one by one, so a malformed update is stored
as far as it is sane and read later as something to ignore, never raising.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Marks for messages the bot answers with help and whose content it does not keep.
_DROPPED_KINDS = (
    ("contact", "contact"),
    ("sticker", "sticker"),
    ("poll", "poll"),
    ("animation", "unsupported"),
    ("video", "unsupported"),
    ("video_note", "unsupported"),
    ("audio", "unsupported"),
    ("dice", "unsupported"),
    ("game", "unsupported"),
    ("story", "unsupported"),
    ("paid_media", "unsupported"),
)
_FORWARD_FIELDS = (
    "forward_origin",
    "forward_from",
    "forward_from_chat",
    "forward_sender_name",
    "forward_signature",
    "forward_date",
    "is_automatic_forward",
)
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _str(value, limit: int = 8192) -> str | None:
    return value if isinstance(value, str) and len(value) <= limit else None


def _pick(source, spec: dict) -> dict:
    """Copy the fields named in spec that pass their type check; drop everything else."""
    if not isinstance(source, dict):
        return {}
    out = {}
    for name, check in spec.items():
        value = check(source.get(name))
        if value is not None:
            out[name] = value
    return out


_FILE = {"file_id": _str, "file_unique_id": _str, "file_size": _int}
_CHAT = {"id": _int, "type": _str}
_USER = {"id": _int, "is_bot": lambda v: v if isinstance(v, bool) else None, "language_code": _str}
_LOCATION = {
    "latitude": _num,
    "longitude": _num,
    "horizontal_accuracy": _num,
    "live_period": _int,
}


def _photo_sizes(value) -> list | None:
    if not isinstance(value, list):
        return None
    sizes = [_pick(s, {**_FILE, "width": _int, "height": _int}) for s in value[:20]]
    sizes = [s for s in sizes if "file_id" in s]
    return sizes or None


def _entities(value) -> list | None:
    """Keep only bot_command entities: they make a command a command."""
    if not isinstance(value, list):
        return None
    kept = [
        _pick(e, {"type": _str, "offset": _int, "length": _int})
        for e in value[:50]
        if isinstance(e, dict) and e.get("type") == "bot_command"
    ]
    return kept or None


def _message(raw: dict, *, edited: bool) -> dict:
    """Return the allow-listed part of a message (an edit keeps no content at all)."""
    msg = _pick(raw, {"message_id": _int, "date": _int, "media_group_id": _str})
    msg["chat"] = _pick(raw.get("chat"), _CHAT)
    sender = _pick(raw.get("from"), _USER)
    if sender:
        msg["from"] = sender
    if edited:
        if isinstance(raw.get("location"), dict):
            msg["live_location_update"] = True
        return msg
    if any(name in raw for name in _FORWARD_FIELDS):
        msg["dropped"] = "forward"  # someone else's words: not a tip from this reporter
        return msg
    for name, mark in _DROPPED_KINDS:
        if name in raw:
            msg["dropped"] = mark
            return msg
    text = _str(raw.get("text"))
    if text is not None:
        msg["text"] = text
        if entities := _entities(raw.get("entities")):
            msg["entities"] = entities
    caption = _str(raw.get("caption"))
    if caption is not None:
        msg["caption"] = caption
    if photo := _photo_sizes(raw.get("photo")):
        msg["photo"] = photo
    if isinstance(raw.get("document"), dict):
        document = _pick(raw["document"], {**_FILE, "mime_type": _str})
        if "file_id" in document:
            msg["document"] = document  # the file name is the sender's and is not kept
    if isinstance(raw.get("voice"), dict):
        voice = _pick(raw["voice"], {**_FILE, "duration": _int, "mime_type": _str})
        if "file_id" in voice:
            msg["voice"] = voice
    location = raw.get("location")
    if isinstance(raw.get("venue"), dict):
        location = raw["venue"].get("location")
        if title := _str(raw["venue"].get("title"), 200):
            msg["venue_title"] = title
    if isinstance(location, dict):
        loc = _pick(location, _LOCATION)
        if "latitude" in loc and "longitude" in loc:
            msg["location"] = loc
    return msg


def sanitise_update(raw) -> dict | None:
    """Return the update as it may be stored, or None when it has no usable update_id."""
    if not isinstance(raw, dict) or _int(raw.get("update_id")) is None:
        return None
    out: dict = {"update_id": raw["update_id"]}
    if isinstance(raw.get("message"), dict):
        out["message"] = _message(raw["message"], edited=False)
    elif isinstance(raw.get("edited_message"), dict):
        out["edited_message"] = _message(raw["edited_message"], edited=True)
    elif isinstance(raw.get("callback_query"), dict):
        cq = raw["callback_query"]
        query = _pick(cq, {"id": _str, "data": lambda v: _str(v, 64)})
        query["from"] = _pick(cq.get("from"), _USER)
        message = cq.get("message")
        if isinstance(message, dict):
            query["message"] = {
                **_pick(message, {"message_id": _int}),
                "chat": _pick(message.get("chat"), _CHAT),
            }
        out["callback_query"] = query
    else:
        out["other"] = True  # chat member changes and the like: acknowledged, ignored
    return out


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """A file on Telegram's side: what to fetch, and how big Telegram says it is."""

    file_id: str
    size: int | None
    kind: str  # photo | document | voice
    mime_type: str | None = None
    duration: int | None = None

    def as_dict(self) -> dict:
        return {
            "file_id": self.file_id,
            "size": self.size,
            "kind": self.kind,
            "mime_type": self.mime_type,
            "duration": self.duration,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FileRef:
        return cls(d["file_id"], d.get("size"), d["kind"], d.get("mime_type"), d.get("duration"))


@dataclass(frozen=True)
class Location:
    """A position a reporter shared."""

    latitude: float
    longitude: float
    accuracy_m: float | None
    live: bool


@dataclass(frozen=True)
class Incoming:
    """One update as the conversation sees it.

    kind: command | text | photo | voice | location | callback | dropped | edit | ignored
    """

    update_id: int
    kind: str
    chat_id: int | None = None
    user_id: int | None = None
    private: bool = True
    message_id: int | None = None
    date: dt.datetime | None = None
    language: str | None = None
    text: str = ""  # the text, or a photo's caption
    command: str | None = None
    args: str = ""
    file: FileRef | None = None
    media_group_id: str | None = None
    location: Location | None = None
    venue_title: str | None = None
    callback_id: str | None = None
    data: str = ""
    dropped: str | None = None


def chat_key(payload: dict) -> int | None:
    """Return the chat an update belongs to (updates of one chat are handled in order)."""
    for name in ("message", "edited_message"):
        if isinstance(payload.get(name), dict):
            return (payload[name].get("chat") or {}).get("id")
    cq = payload.get("callback_query")
    if isinstance(cq, dict):
        chat = (cq.get("message") or {}).get("chat") or {}
        return chat.get("id") or (cq.get("from") or {}).get("id")
    return None


def _command(text: str, entities: list) -> tuple[str | None, str]:
    """Split "/cmd@bot args" when the text starts with a bot_command entity."""
    for e in entities:
        if e.get("offset") == 0 and e.get("length", 0) > 1:
            word = text[: e["length"]]
            name = word[1:].split("@", 1)[0].lower()
            return name, text[e["length"] :].strip()
    return None, text


def _largest_photo(sizes: list) -> FileRef:
    """Telegram lists photo sizes smallest first; the bot takes the largest."""
    best = max(sizes, key=lambda s: (s.get("width", 0) * s.get("height", 0), sizes.index(s)))
    return FileRef(best["file_id"], best.get("file_size"), "photo", "image/jpeg")


def read_update(payload: dict) -> Incoming:
    """Read a stored (sanitised) update into an Incoming; anything odd becomes "ignored"."""
    update_id = payload.get("update_id", 0)
    if isinstance(payload.get("callback_query"), dict):
        cq = payload["callback_query"]
        sender = cq.get("from") or {}
        message = cq.get("message") or {}
        chat = message.get("chat") or {}
        if not cq.get("id") or sender.get("id") is None:
            return Incoming(update_id, "ignored")
        return Incoming(
            update_id,
            "callback",
            chat_id=chat.get("id", sender["id"]),
            user_id=sender["id"],
            private=chat.get("type", "private") == "private",
            message_id=message.get("message_id"),
            language=sender.get("language_code"),
            callback_id=cq["id"],
            data=cq.get("data") or "",
        )
    edited = isinstance(payload.get("edited_message"), dict)
    msg = payload.get("message") if not edited else payload["edited_message"]
    if not isinstance(msg, dict):
        return Incoming(update_id, "ignored")
    chat, sender = msg.get("chat") or {}, msg.get("from") or {}
    if chat.get("id") is None or sender.get("id") is None or sender.get("is_bot"):
        return Incoming(update_id, "ignored")
    date = msg.get("date")
    base = dict(
        chat_id=chat["id"],
        user_id=sender["id"],
        private=chat.get("type") == "private",
        message_id=msg.get("message_id"),
        date=dt.datetime.fromtimestamp(date, dt.UTC) if date else None,
        language=sender.get("language_code"),
    )
    if edited:
        return Incoming(update_id, "edit", **base)
    if msg.get("dropped"):
        return Incoming(update_id, "dropped", dropped=msg["dropped"], **base)
    caption = msg.get("caption") or ""
    group = msg.get("media_group_id")
    if msg.get("photo"):
        return Incoming(
            update_id,
            "photo",
            text=caption,
            file=_largest_photo(msg["photo"]),
            media_group_id=group,
            **base,
        )
    if doc := msg.get("document"):
        ref = FileRef(doc["file_id"], doc.get("file_size"), "document", doc.get("mime_type"))
        return Incoming(update_id, "photo", text=caption, file=ref, media_group_id=group, **base)
    if voice := msg.get("voice"):
        ref = FileRef(
            voice["file_id"],
            voice.get("file_size"),
            "voice",
            voice.get("mime_type") or "audio/ogg",
            voice.get("duration"),
        )
        return Incoming(update_id, "voice", text=caption, file=ref, **base)
    if loc := msg.get("location"):
        location = Location(
            loc["latitude"],
            loc["longitude"],
            loc.get("horizontal_accuracy"),
            bool(loc.get("live_period")),
        )
        return Incoming(
            update_id, "location", location=location, venue_title=msg.get("venue_title"), **base
        )
    if "text" in msg:
        command, args = _command(msg["text"], msg.get("entities") or [])
        if command:
            return Incoming(
                update_id, "command", text=msg["text"], command=command, args=args, **base
            )
        return Incoming(update_id, "text", text=msg["text"], **base)
    return Incoming(update_id, "dropped", dropped="unsupported", **base)
