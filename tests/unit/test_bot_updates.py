"""Sanitising and reading Telegram updates: what is kept, what never is."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from app.bot.updates import chat_key, read_update, sanitise_update

USER = {
    "id": 42,
    "is_bot": False,
    "first_name": "Wang",
    "last_name": "Wei",
    "username": "ww",
    "language_code": "zh-hans",
}
CHAT = {"id": 42, "type": "private", "first_name": "Wang", "username": "ww"}


def msg(**fields) -> dict:
    return {
        "update_id": 1,
        "message": {"message_id": 5, "date": 1700000000, "chat": CHAT, "from": USER, **fields},
    }


def test_names_and_usernames_are_dropped():
    stored = json.dumps(sanitise_update(msg(text="hi")), ensure_ascii=False)
    assert "Wang" not in stored and "ww" not in stored and '"hi"' in stored


def test_contact_card_keeps_no_phone_number():
    out = sanitise_update(msg(contact={"phone_number": "+8613800138000", "first_name": "Li"}))
    assert out["message"]["dropped"] == "contact"
    assert "13800138000" not in json.dumps(out) and "Li" not in json.dumps(out)
    assert read_update(out).kind == "dropped"


def test_forward_keeps_neither_origin_nor_content():
    out = sanitise_update(
        msg(
            text="someone else's words",
            forward_origin={"type": "hidden_user", "sender_user_name": "Origin"},
            forward_date=1,
        )
    )
    assert out["message"]["dropped"] == "forward"
    assert "Origin" not in json.dumps(out) and "someone" not in json.dumps(out)


def test_live_location_edits_keep_no_coordinates():
    raw = {
        "update_id": 2,
        "edited_message": {
            "message_id": 5,
            "date": 1,
            "edit_date": 2,
            "chat": CHAT,
            "from": USER,
            "location": {"latitude": 40.1, "longitude": 122.1, "live_period": 900},
        },
    }
    out = sanitise_update(raw)
    assert "40.1" not in json.dumps(out) and out["edited_message"]["live_location_update"]
    assert read_update(out).kind == "edit"


def test_document_name_is_dropped_and_photo_is_the_largest():
    out = sanitise_update(
        msg(
            document={
                "file_id": "d",
                "file_name": "../../etc/passwd.jpg",
                "mime_type": "image/jpeg",
                "file_size": 10,
            }
        )
    )
    assert "passwd" not in json.dumps(out)
    sizes = [
        {"file_id": "s", "width": 90, "height": 90},
        {"file_id": "l", "width": 1280, "height": 960, "file_size": 99},
    ]
    inc = read_update(sanitise_update(msg(photo=sizes, caption="c", media_group_id="g")))
    assert (inc.kind, inc.file.file_id, inc.text, inc.media_group_id) == ("photo", "l", "c", "g")


def test_commands_need_their_entity():
    entity = [{"type": "bot_command", "offset": 0, "length": 7}]
    inc = read_update(sanitise_update(msg(text="/status@tipline_bot T-7K3M9Q", entities=entity)))
    assert (inc.kind, inc.command, inc.args) == ("command", "status", "@tipline_bot T-7K3M9Q")
    assert read_update(sanitise_update(msg(text="/status T-1"))).kind == "text"


def test_callback_query_reads_chat_and_data():
    raw = {
        "update_id": 3,
        "callback_query": {
            "id": "q",
            "from": USER,
            "data": "cat:theft",
            "message": {"message_id": 9, "chat": CHAT, "text": "bot text"},
        },
    }
    out = sanitise_update(raw)
    inc = read_update(out)
    assert (inc.kind, inc.chat_id, inc.message_id, inc.data) == ("callback", 42, 9, "cat:theft")
    assert chat_key(out) == 42 and "bot text" not in json.dumps(out)


def test_no_update_id_is_not_stored():
    assert sanitise_update({"message": {}}) is None
    assert sanitise_update([1, 2]) is None
    assert sanitise_update({"update_id": True}) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
fields = st.sampled_from(
    [
        "message",
        "edited_message",
        "callback_query",
        "chat",
        "from",
        "text",
        "photo",
        "location",
        "document",
        "voice",
        "entities",
        "date",
        "id",
    ]
)


@given(st.dictionaries(fields, json_values, max_size=5), st.dictionaries(fields, json_values))
def test_any_update_is_stored_and_read_without_raising(top, inner):
    for raw in (
        {"update_id": 1, **top},
        {"update_id": 1, "message": {**inner}},
        {"update_id": 1, "callback_query": {**inner}},
    ):
        out = sanitise_update(raw)
        json.dumps(out)
        read_update(out)
        chat_key(out)
