"""The bot's conversation: one update in, database changes and replies out, in one transaction.

Steps live in the reporter's draft (bot_drafts), never in memory::

    /report or 📝 ──▶ category ──cat:*──▶ describe ──text│voice──▶ photos ──photo…──┐
                        ▲                                      │  done│skip           │
                        │ edit:*                               ▼                     │
    photo (+caption) ───┼──────────────(quick path)──────▶ location ◀────────────────┘
                        │                                      │ location│landmark│address
                        │                                      ▼
                        └────────────── sum:edit ◀──────── summary ──sum:confirm──▶ tip + ref
                                                               │ ago:* (when it happened)
    /cancel, sum:cancel: the draft is dropped.   Abandoned drafts expire with a message.

Photos may come at any step (albums are acknowledged once, when they settle); a
location may come early. Each reply to a reporter is an outbox row written in
the same transaction, so an update is handled, and answered, exactly once.

The work is split so that no transaction waits for the network or the decoder:
`plan_update` reads (without a write lock), the runtime then fetches the files the
plan asks for (`files_to_fetch`), checks an arriving photo, and for a confirm
decodes the draft's photos and stores its voice note, and `apply_update` writes:
the confirm's transaction (on SQLite, the one writer lock) waits for neither.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.bot import keyboards as kb
from app.bot.services import (
    DraftView,
    StaleDraft,
    attach_voice,
    clear_album,
    create_draft,
    drop_draft,
    expired_drafts,
    load_draft,
    queue_reply,
    recent_tips,
    save_draft,
    settled_albums,
    tip_id_for_ref,
)
from app.bot.updates import FileRef, Incoming
from app.config import Settings
from app.errors import DomainError
from app.i18n import catalogue, t
from app.people.errors import InvalidInvite
from app.people.identities import (
    RegistrationClosed,
    find_telegram_reporter,
    link_staff_chat,
    register_telegram_reporter,
    reporter_chats,
    staff_for_chat,
)
from app.people.models import Reporter
from app.reports.categories import list_categories
from app.reports.errors import TipNotFound
from app.reports.photos import ProcessedPhoto
from app.reports.reporter_view import reporter_status
from app.reports.services import Upload, submit_tip, view_tip
from app.reports.storage import MediaStore
from app.rewards.leaderboards import reporter_points
from app.staff.actions import act_on_tip
from app.staff.landmarks import place_by_landmark
from app.staff.scope import viewer_for

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # the Bot API refuses getFile above this
DELETE_WINDOW = dt.timedelta(hours=47)  # Telegram lets a bot delete messages for 48 hours
DESCRIPTION_IN_SUMMARY = 600
_KEY_NAMESPACE = uuid.UUID("6f1c1f39-3c41-4d0e-9d1e-7b5b8f0c2a11")
QUICK_CATEGORY = "other"


@dataclass(frozen=True)
class ReporterView:
    """The reporter behind a chat, as plain values."""

    id: int
    pseudonym: str
    role: str
    locale: str


@dataclass(frozen=True)
class Plan:
    """What the database said before the update is applied."""

    reporter: ReporterView | None
    draft: DraftView | None


@dataclass(frozen=True)
class ToFetch:
    """What the runtime gets ready for an update before its transaction begins."""

    checks: list[FileRef] = field(default_factory=list)  # arriving photos, checked at once
    photos: list[FileRef] = field(default_factory=list)  # a confirmed draft's: to clean
    voice: FileRef | None = None  # a confirmed draft's voice note: to store


@dataclass
class Fetched:
    """What the runtime got ready for this update, keyed by file id.

    checks: "ok", a refusal code or "too_big" per arriving photo; files: the downloaded
    bytes; cleaned: a confirmed draft's photos the pipeline took (a refused one is not
    there); voice_key: its voice note, already in the media store.
    """

    checks: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    cleaned: dict[str, ProcessedPhoto] = field(default_factory=dict)
    voice_key: str | None = None


@dataclass(frozen=True)
class Message:
    """A text with an optional reply markup; always sent as plain text (no parse mode)."""

    text: str
    markup: dict | None = None


@dataclass
class Effects:
    """What the runtime does after the transaction commits (best effort, never stored)."""

    direct: list[Message] = field(default_factory=list)  # chats without a reporter
    answer: str | None = None  # answer to the callback query
    edit: Message | None = None  # new text for the message whose button was pressed
    delete: list[int] = field(default_factory=list)  # the reporter's messages to delete
    replies: list[str] = field(default_factory=list)  # dedupe keys of the replies queued


@dataclass(frozen=True)
class Env:
    """Settings, the media store and the moment of handling."""

    settings: Settings
    store: MediaStore
    now: dt.datetime


# --- reading ---------------------------------------------------------------------------------


def plan_update(session: Session, settings: Settings, inc: Incoming) -> Plan:
    """Read the reporter and their draft for this update (no writes)."""
    if inc.user_id is None:
        return Plan(None, None)
    reporter = find_telegram_reporter(session, settings.secret_key, inc.user_id)
    if reporter is None:
        return Plan(None, None)
    view = ReporterView(reporter.id, reporter.pseudonym, reporter.role, reporter.locale)
    return Plan(view, load_draft(session, reporter.id))


def too_big(ref: FileRef) -> bool:
    """Whether Telegram will refuse to hand the file to a bot."""
    return ref.size is not None and ref.size > TELEGRAM_DOWNLOAD_LIMIT


def files_to_fetch(plan: Plan, inc: Incoming) -> ToFetch:
    """Say which files this update needs fetched, and made ready, before its transaction."""
    if plan.reporter is None:
        return ToFetch()
    if inc.kind == "photo" and inc.file and not too_big(inc.file):
        return ToFetch(checks=[inc.file])
    draft = plan.draft
    if inc.kind == "callback" and inc.data == "sum:confirm" and draft and draft.step == "summary":
        voice = draft.data.get("voice")
        return ToFetch(
            photos=[FileRef.from_dict(p) for p in draft.data.get("photos", [])],
            voice=FileRef.from_dict(voice) if voice else None,
        )
    return ToFetch()


# --- applying --------------------------------------------------------------------------------


def apply_update(
    session: Session, env: Env, inc: Incoming, plan: Plan, fetched: Fetched
) -> Effects:
    """Handle one update in the caller's transaction and return what to do after commit."""
    turn = Turn(session, env, inc, plan, fetched)
    turn.run()
    return turn.effects


def _city_time(settings: Settings, when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.timezone(dt.timedelta(minutes=settings.bot_utc_offset_minutes)))


class Turn:
    """One update being handled: the steps below read and change the draft, and reply."""

    def __init__(
        self,
        session: Session,
        env: Env,
        inc: Incoming,
        plan: Plan,
        fetched: Fetched,
        reply_key: str | None = None,
    ):
        self.session, self.env, self.inc = session, env, inc
        self.settings = env.settings
        self.reporter = plan.reporter
        self.draft = plan.draft
        self.fetched = fetched
        self.effects = Effects()
        self.locale = plan.reporter.locale if plan.reporter else "zh"
        # Outbox dedupe keys: handling the same update twice can never queue a reply twice.
        self.reply_key = reply_key or f"upd:{inc.update_id}"
        self._replies = 0
        self._categories: list[tuple[str, str, str]] | None = None

    # --- output ----------------------------------------------------------------------------

    def say(self, text: str, markup: dict | None = None, *, tip_id: int | None = None) -> None:
        """Reply in the chat: through the outbox to a reporter, directly to anyone else."""
        if self.reporter is None:
            self.effects.direct.append(Message(text, markup))
            return
        key = f"{self.reply_key}:{self._replies}"
        queue_reply(self.session, self.reporter.id, text, markup, dedupe_key=key, tip_id=tip_id)
        self._replies += 1
        self.effects.replies.append(key)

    def t(self, key: str, **params) -> str:
        return t(key, self.locale, **params)

    def answer(self, key: str | None = None, **params) -> None:
        self.effects.answer = self.t(key, **params) if key else ""

    # --- draft -----------------------------------------------------------------------------

    def _ttl(self, data: dict, step: str) -> dt.timedelta:
        if data.get("quick") and step == "location":
            return dt.timedelta(minutes=self.settings.bot_quick_path_minutes)
        return dt.timedelta(minutes=self.settings.bot_draft_ttl_minutes)

    def new_draft(self, step: str, data: dict, media_group_id: str | None = None) -> None:
        create_draft(
            self.session,
            self.reporter.id,
            step=step,
            data=data,
            now=self.env.now,
            ttl=self._ttl(data, step),
            media_group_id=media_group_id,
        )

    def save(self, step: str, data: dict, media_group_id: str | None = None) -> None:
        save_draft(
            self.session,
            self.draft,
            step=step,
            data=data,
            now=self.env.now,
            ttl=self._ttl(data, step),
            media_group_id=media_group_id,
        )

    def fresh_data(self, **extra) -> dict:
        when = self.inc.date or self.env.now
        return {
            "category": None,
            "description": "",
            "voice": None,
            "photos": [],
            "location": None,
            "address": None,
            "placed_by": None,
            "observed_at": when.isoformat(),
            "ago": None,
            "editing": False,
            "quick": False,
            "prompted": True,
            "messages": [],
            **extra,
        }

    def remember_message(self, data: dict) -> None:
        """Keep the reporter's message id (for the optional clean-up after submitting)."""
        if self.inc.message_id is not None and self.inc.date is not None:
            data.setdefault("messages", []).append(
                [self.inc.message_id, int(self.inc.date.timestamp())]
            )

    # --- prompts ---------------------------------------------------------------------------

    def category_names(self) -> list[tuple[str, str]]:
        """(code, name in the reporter's language) of the active categories, read once a turn."""
        if self._categories is None:
            self._categories = [
                (c.code, c.name_zh, c.name_en) for c in list_categories(self.session)
            ]
        english = self.locale == "en"
        return [(code, en if english else zh) for code, zh, en in self._categories]

    def category_name(self, code: str | None) -> str:
        return dict(self.category_names()).get(code, code or "")

    def prompt(self, step: str, data: dict) -> Message:
        """The question of a step, with its buttons."""
        if step == "category":
            return Message(
                self.t("bot.ask_category"), kb.category_keyboard(self.category_names(), self.locale)
            )
        if step == "describe":
            return Message(self.t("bot.ask_description"))
        if step == "photos":
            count = len(data.get("photos", []))
            text = self.t("bot.ask_more_photos", count=count) if count else self.t("bot.ask_photos")
            markup = kb.photos_keyboard(self.locale, count=count, editing=data.get("editing"))
            return Message(text, markup)
        if step == "location":
            return Message(self.t("bot.ask_location"), kb.location_keyboard(self.locale))
        return Message(self.summary_text(data), kb.summary_keyboard(self.locale))

    def say_prompt(self, step: str, data: dict, lead: str | None = None) -> None:
        message = self.prompt(step, data)
        self.say(f"{lead}\n{message.text}" if lead else message.text, message.markup)

    def observed_at(self, data: dict) -> dt.datetime:
        started = dt.datetime.fromisoformat(data["observed_at"])
        return started - dt.timedelta(minutes=data.get("ago") or 0)

    def summary_text(self, data: dict) -> str:
        lines = [
            self.t("bot.summary.title"),
            self.t("bot.summary.category", name=self.category_name(data.get("category"))),
        ]
        description = data.get("description") or ""
        if description:
            if len(description) > DESCRIPTION_IN_SUMMARY:
                description = description[:DESCRIPTION_IN_SUMMARY] + "…"
            lines.append(self.t("bot.summary.description", text=description))
        elif not data.get("voice"):
            lines.append(self.t("bot.summary.no_description"))
        if data.get("voice"):
            lines.append(self.t("bot.summary.voice", seconds=data["voice"].get("duration") or 0))
        lines.append(self.t("bot.summary.photos", count=len(data.get("photos", []))))
        loc, address = data.get("location"), data.get("address")
        if loc and data.get("placed_by") == "landmark":
            lines.append(self.t("bot.summary.landmark", address=address))
        elif loc:
            lines.append(
                self.t("bot.summary.location", lat=f"{loc['lat']:.5f}", lon=f"{loc['lon']:.5f}")
            )
        elif address:
            lines.append(self.t("bot.summary.unplaced", address=address))
        else:
            lines.append(self.t("bot.summary.no_location"))
        when = _city_time(self.settings, self.observed_at(data))
        ago = self.t(f"bot.ago.{data.get('ago') or 0}")
        lines.append(self.t("bot.summary.when", time=when.strftime("%H:%M"), ago=ago))
        lines.append("")
        lines.append(self.t("bot.summary.hint"))
        return "\n".join(lines)

    def next_step_after(self, step: str, data: dict) -> str:
        """Where the guided flow goes next (back to the summary when editing)."""
        if data.get("editing"):
            return "summary"
        if step == "category":
            return "describe"
        if step == "describe":
            return "photos"
        if step == "photos":
            return "summary" if data.get("location") or data.get("address") else "location"
        return "summary"

    def advance(self, step: str, data: dict, lead: str | None = None) -> None:
        """Leave `step`: save the draft at the next step and ask its question."""
        nxt = self.next_step_after(step, data)
        if nxt == "summary":
            data["editing"] = False
        self.save(nxt, data)
        self.say_prompt(nxt, data, lead)

    # --- dispatch --------------------------------------------------------------------------

    def run(self) -> None:
        inc = self.inc
        if inc.kind in ("ignored", "edit") or inc.chat_id is None or not inc.private:
            return  # edits (live-location updates too) and group chats are not used
        if inc.kind == "callback" and inc.data.startswith("ack:"):
            self.staff_acknowledge(inc.data[4:])
            return
        if inc.kind == "command" and inc.command == "start":
            self.start()
            return
        if self.reporter is None:
            if inc.kind == "callback":
                self.answer("bot.not_registered")
            else:
                self.say(self.t("bot.not_registered"))
            return
        handler = {
            "command": self.command,
            "callback": self.callback,
            "text": self.on_text,
            "photo": self.on_photo,
            "voice": self.on_voice,
            "location": self.on_location,
        }.get(inc.kind)
        if handler is None:
            self.say(
                self.t("bot.unsupported") + "\n\n" + self.t("bot.help"),
                kb.main_keyboard(self.locale),
            )
            return
        handler()

    # --- registration and staff ------------------------------------------------------------

    def start(self) -> None:
        """`/start [CODE]`: link a staff chat, or register a reporter (invite or citizen)."""
        code = self.inc.args.strip()
        if code:
            staff = link_staff_chat(self.session, self.settings.secret_key, code, self.inc.chat_id)
            if staff is not None:
                self.effects.direct.append(
                    Message(t("bot.staff_linked", staff.locale, username=staff.username))
                )
                return
        if self.reporter is not None:
            self.say(
                self.t("bot.welcome_back", pseudonym=self.reporter.pseudonym),
                kb.main_keyboard(self.locale),
            )
            return
        try:
            reporter = register_telegram_reporter(
                self.session,
                self.settings.secret_key,
                user_id=self.inc.user_id,
                chat_id=self.inc.chat_id,
                invite_code=code or None,
                allow_citizens=self.settings.bot_allow_citizens,
                now=self.env.now,
            )
        except InvalidInvite:
            self.say(self.t("bot.invite_invalid"))
            return
        except RegistrationClosed:
            self.say(self.t("bot.registration_closed"))
            return
        self.reporter = ReporterView(
            reporter.id, reporter.pseudonym, reporter.role, reporter.locale
        )
        self.locale = reporter.locale
        role = self.t(f"bot.role.{reporter.role}")
        self.say(
            self.t("bot.welcome_new", role=role, pseudonym=reporter.pseudonym),
            kb.main_keyboard(self.locale),
        )

    def staff_acknowledge(self, ref: str) -> None:
        """A staff member pressed "acknowledge" on an alert: the workflow decides."""
        staff = staff_for_chat(self.session, self.inc.chat_id)
        if staff is None:
            self.answer("bot.button_expired")
            return
        self.locale = staff.locale
        try:
            with self.session.begin_nested():
                act_on_tip(
                    self.session,
                    viewer_for(self.session, staff),
                    ref,
                    action="acknowledge",
                    now=self.env.now,
                )
        except DomainError:
            self.answer("bot.ack.failed")
            return
        self.answer("bot.ack.done", ref=ref)
        self.effects.edit = Message(self.t("bot.ack.done", ref=ref))

    # --- commands --------------------------------------------------------------------------

    def command(self) -> None:
        name = self.inc.command
        handler = {
            "report": self.start_report,
            "cancel": self.cancel,
            "help": self.help,
            "mytips": self.my_tips,
            "status": self.status,
            "points": self.points,
            "language": self.language,
        }.get(name, self.help)
        handler()

    def help(self) -> None:
        self.say(self.t("bot.help"), kb.main_keyboard(self.locale))

    def points(self) -> None:
        """Show the balance, this period's points and the rank among peers of the same role."""
        mine = reporter_points(self.session, self.reporter.id)
        self.say(self.t("rewards.me", **mine))

    def language(self) -> None:
        self.say(self.t("bot.language.choose"), kb.language_keyboard())

    def start_report(self) -> None:
        """Start the guided flow, or resume the draft in progress."""
        if self.draft is not None:
            data = self.draft.copy_data()
            self.say_prompt(self.draft.step, data, lead=self.t("bot.resume"))
            return
        data = self.fresh_data()
        self.remember_message(data)
        self.new_draft("category", data)
        self.say_prompt("category", data)

    def cancel(self) -> None:
        if self.draft is None:
            self.say(self.t("bot.nothing_to_cancel"), kb.main_keyboard(self.locale))
            return
        drop_draft(self.session, self.draft)
        self.say(self.t("bot.cancelled"), kb.main_keyboard(self.locale))

    def my_tips(self) -> None:
        rows = recent_tips(self.session, self.reporter.id)
        if not rows:
            self.say(self.t("bot.mytips.empty"), kb.main_keyboard(self.locale))
            return
        lines = [self.t("bot.mytips.title")]
        for ref, status, category, received_at in rows:
            lines.append(
                self.t(
                    "bot.mytips.line",
                    ref=ref,
                    category=self.category_name(category),
                    status=t(f"status.{reporter_status(status)}", self.locale),
                    date=_city_time(self.settings, received_at).strftime("%m-%d %H:%M"),
                )
            )
        self.say("\n".join(lines), kb.main_keyboard(self.locale))

    def status(self) -> None:
        ref = self.inc.args.strip().split()[0] if self.inc.args.strip() else ""
        if not ref:
            self.say(self.t("bot.status.usage"))
            return
        try:
            view = view_tip(self.session, self.settings, ref, reporter_id=self.reporter.id)
        except TipNotFound:
            self.say(self.t("bot.status.not_found"))
            return
        received = dt.datetime.fromisoformat(view["received_at"])
        text = self.t(
            "bot.status.line",
            ref=view["ref"],
            status=t(f"status.{view['status']}", self.locale),
            category=self.category_name(view["category"]),
            date=_city_time(self.settings, received).strftime("%Y-%m-%d %H:%M"),
        )
        if view.get("needs_location"):
            text += "\n" + self.t("bot.status.needs_location")
        self.say(text)

    # --- messages --------------------------------------------------------------------------

    def on_text(self) -> None:
        text = self.inc.text
        button = kb.main_button(text)
        if button == "report":
            self.start_report()
            return
        if button in ("mytips", "help"):
            {"mytips": self.my_tips, "help": self.help}[button]()
            return
        if self.draft is None:
            self.say(self.t("bot.no_draft_hint"), kb.main_keyboard(self.locale))
            return
        step, data = self.draft.step, self.draft.copy_data()
        self.remember_message(data)
        if step == "describe":
            data["description"] = text  # stored exactly as typed
            self.advance("describe", data)
        elif step == "location":
            self.place_address(data, text)
            self.advance("location", data)
        elif step == "photos" and not data.get("description") and not data.get("voice"):
            data["description"] = text
            self.save(step, data, self.draft.media_group_id)
            self.say_prompt(step, data)
        else:
            self.save(step, data, self.draft.media_group_id)
            self.say(self.t("bot.use_buttons"))

    def place_address(self, data: dict, text: str) -> None:
        """Place a typed landmark on the map, or keep it as an address for staff to place."""
        address = text.strip()[:500]
        data["address"] = address
        placed = place_by_landmark(self.session, address)
        if placed is not None:
            lat, lon, _landmark_id = placed
            data["location"] = {"lat": lat, "lon": lon, "accuracy": None}
            data["placed_by"] = "landmark"
        else:
            data["location"] = None
            data["placed_by"] = None

    def _merge_caption(self, data: dict) -> None:
        caption = self.inc.text
        if not caption:
            return
        current = data.get("description") or ""
        if not current:
            data["description"] = caption
        elif caption not in current:
            data["description"] = f"{current}\n{caption}"

    def on_photo(self) -> None:
        """A photo (or an image sent as a file): checked, added, and the draft goes on."""
        ref = self.inc.file
        if self.draft is None:
            data = self.fresh_data(category=QUICK_CATEGORY, quick=True, prompted=False)
            step, group = "location", None
        else:
            data, step, group = self.draft.copy_data(), self.draft.step, self.draft.media_group_id
        self.remember_message(data)
        self._merge_caption(data)
        check = "too_big" if too_big(ref) else self.fetched.checks.get(ref.file_id, "missing")
        refusal = None
        if check == "too_big":
            refusal = self.t("bot.file_too_big")
        elif check != "ok":
            refusal = self.t(f"bot.photo_refused.{check}")
        elif len(data["photos"]) >= self.settings.max_photos:
            refusal = self.t("bot.too_many_photos", max=self.settings.max_photos)
        elif ref.file_id not in {p["file_id"] for p in data["photos"]}:
            data["photos"].append(ref.as_dict())
        if self.draft is None and not data["photos"] and not data["description"]:
            self.say(refusal)  # nothing kept, so no draft to go on with
            return
        if self.inc.media_group_id:
            group = self.inc.media_group_id  # acknowledged once, when the album settles
        quick_first = data.get("quick") and not data.get("prompted") and not group
        if quick_first:
            data["prompted"] = True
        if self.draft is None:
            self.new_draft(step, data, group)
        else:
            self.save(step, data, group)
        if refusal:
            self.say(refusal)
        if quick_first:
            self.say(self.quick_prompt_text(data), kb.location_keyboard(self.locale))
        elif not group and not refusal:
            self.say_prompt(step, data, self.t("bot.photo_added", count=len(data["photos"])))

    def quick_prompt_text(self, data: dict) -> str:
        return self.t(
            "bot.quick_started",
            count=len(data["photos"]),
            minutes=self.settings.bot_quick_path_minutes,
        )

    def on_voice(self) -> None:
        if self.draft is None:
            self.say(self.t("bot.no_draft_hint"), kb.main_keyboard(self.locale))
            return
        ref = self.inc.file
        data, step = self.draft.copy_data(), self.draft.step
        self.remember_message(data)
        if too_big(ref):
            self.save(step, data, self.draft.media_group_id)
            self.say(self.t("bot.file_too_big"))
            return
        data["voice"] = ref.as_dict()
        self._merge_caption(data)
        lead = self.t("bot.voice_added", seconds=ref.duration or 0)
        if step == "describe":
            self.advance("describe", data, lead)
            return
        self.save(step, data, self.draft.media_group_id)
        self.say_prompt(step, data, lead)

    def on_location(self) -> None:
        """A shared position (a live location counts once, as first shared)."""
        if self.draft is None:
            self.say(self.t("bot.no_draft_hint"), kb.main_keyboard(self.locale))
            return
        loc = self.inc.location
        data, step = self.draft.copy_data(), self.draft.step
        self.remember_message(data)
        data["location"] = {"lat": loc.latitude, "lon": loc.longitude, "accuracy": loc.accuracy_m}
        data["address"] = self.inc.venue_title
        data["placed_by"] = "device"
        if step in ("photos", "location", "summary"):
            data["editing"] = False
            self.save("summary", data)
            self.say_prompt("summary", data)
            return
        self.save(step, data, self.draft.media_group_id)
        self.say_prompt(step, data, self.t("bot.location_noted"))

    # --- buttons ---------------------------------------------------------------------------

    def callback(self) -> None:
        action, _, value = self.inc.data.partition(":")
        self.answer()
        if action == "lang" and value in ("zh", "en"):
            self.set_language(value)
            return
        draft = self.draft
        if draft is None:
            self.answer("bot.button_expired")
            return
        step, data = draft.step, draft.copy_data()
        if action == "cat" and step == "category":
            if value not in dict(self.category_names()):
                self.answer("bot.button_expired")
                return
            data["category"] = value
            self.effects.edit = Message(
                self.t("bot.category_chosen", name=self.category_name(value))
            )
            self.advance("category", data)
        elif action == "photos" and step == "photos" and value in ("done", "skip"):
            self.effects.edit = Message(self.t("bot.photos_done", count=len(data["photos"])))
            self.advance("photos", data)
        elif action == "photos" and step == "photos" and value == "clear":
            data["photos"] = []
            self.save(step, data)
            self.say_prompt(step, data, self.t("bot.photos_cleared"))
        elif action == "sum" and value == "cancel":
            drop_draft(self.session, draft)
            self.effects.edit = Message(self.t("bot.cancelled"))
            self.say(self.t("bot.cancelled"), kb.main_keyboard(self.locale))
        elif action == "sum" and value == "confirm" and step == "summary":
            self.confirm()
        elif action == "sum" and value == "edit" and step == "summary":
            self.effects.edit = Message(self.t("bot.edit_which"), kb.edit_keyboard(self.locale))
        elif action == "edit" and step == "summary":
            self.edit_part(value, data)
        elif action == "ago" and step == "summary" and value.isdigit():
            data["ago"] = int(value) if int(value) in kb.AGO_MINUTES else 0
            self.save(step, data)
            self.effects.edit = Message(self.summary_text(data), kb.summary_keyboard(self.locale))
        else:
            self.answer("bot.button_expired")

    def set_language(self, locale: str) -> None:
        self.session.execute(
            update(Reporter).where(Reporter.id == self.reporter.id).values(locale=locale)
        )
        self.locale = locale
        self.effects.edit = Message(self.t("bot.language.set"))
        self.say(self.t("bot.language.set"), kb.main_keyboard(locale))

    def edit_part(self, part: str, data: dict) -> None:
        steps = {
            "category": "category",
            "description": "describe",
            "photos": "photos",
            "location": "location",
        }
        if part == "back":
            self.effects.edit = Message(self.summary_text(data), kb.summary_keyboard(self.locale))
            return
        if part not in steps:
            self.answer("bot.button_expired")
            return
        data["editing"] = True
        self.effects.edit = Message(
            self.t("bot.edit_which") + " " + self.t(f"bot.button.edit_{part}")
        )
        self.save(steps[part], data)
        self.say_prompt(steps[part], data)

    # --- submitting ------------------------------------------------------------------------

    def tip_fields(self, data: dict) -> dict:
        fields = {
            "category": data.get("category") or QUICK_CATEGORY,
            "description": data.get("description") or "",
            "occurred_at": self.observed_at(data).isoformat(),
        }
        if not fields["description"] and data.get("voice") and not data.get("photos"):
            fields["description"] = t("bot.voice_description")  # staff read the catalogue's zh
        loc = data.get("location")
        if loc:
            fields["latitude"], fields["longitude"] = loc["lat"], loc["lon"]
            if loc.get("accuracy") is not None:
                fields["accuracy_m"] = loc["accuracy"]
            fields["location_source"] = "map" if data.get("placed_by") == "landmark" else "device"
        if data.get("address"):
            fields["address"] = data["address"]
        return fields

    def confirm(self) -> None:
        """Store the tip from what the runtime made ready: photos cleaned, voice note stored.

        A photo the pipeline refused then is left out and the tip kept (it was checked
        when it came, so this is rare); a photo no longer on Telegram's side likewise.
        """
        draft, data = self.draft, self.draft.data
        cleaned = self.fetched.cleaned
        kept = [p["file_id"] for p in data.get("photos", []) if p["file_id"] in cleaned]
        key = str(uuid.uuid5(_KEY_NAMESPACE, f"{draft.id}:{draft.created_at.isoformat()}"))
        try:
            submission = submit_tip(
                self.session,
                self.settings,
                self.env.store,
                fields=self.tip_fields(data),
                uploads=[Upload(self.fetched.files[f]) for f in kept],
                processed=[cleaned[f] for f in kept],
                channel="telegram",
                reporter_id=self.reporter.id,
                idempotency_key=key,
                now=self.env.now,
            )
        except DomainError as exc:
            if exc.status >= 500:
                raise  # full disk, database trouble: the update is retried
            key_name = f"bot.refused.{exc.code}"
            reason = self.t(key_name if key_name in catalogue() else "bot.refused.other")
            self.say(self.t("bot.refused", reason=reason))
            return
        tip_id = tip_id_for_ref(self.session, submission.ref)
        voice = data.get("voice")
        if voice and self.fetched.voice_key:
            attach_voice(
                self.session,
                tip_id,
                self.fetched.voice_key,
                mime_type=voice.get("mime_type") or "audio/ogg",
                duration_s=voice.get("duration"),
            )
        drop_draft(self.session, draft)
        ref = submission.ref
        text = self.t(
            "bot.submitted", ref=ref, status=t(f"status.{submission.body['status']}", self.locale)
        )
        if submission.body.get("grid") is None:
            text += "\n" + self.t("bot.submitted_unplaced")
        self.effects.edit = Message(self.t("bot.receipt_line", ref=ref))
        self.say(text, kb.main_keyboard(self.locale), tip_id=tip_id)
        if self.settings.bot_delete_tip_messages:
            self.effects.delete = [
                mid
                for mid, ts in data.get("messages", [])
                if self.env.now - dt.datetime.fromtimestamp(ts, dt.UTC) < DELETE_WINDOW
            ]


# --- timed jobs ------------------------------------------------------------------------------


def _reporter_view(session: Session, reporter_id: int) -> ReporterView | None:
    r = session.get(Reporter, reporter_id)
    return ReporterView(r.id, r.pseudonym, r.role, r.locale) if r else None


def _job_turn(session: Session, env: Env, draft: DraftView, name: str) -> Turn | None:
    """A turn for a timed job on a draft: replies keyed by the draft's state, sent once."""
    reporter = _reporter_view(session, draft.reporter_id)
    if reporter is None:
        return None
    key = f"{name}:{draft.id}:{draft.updated_at.timestamp()}"
    inc = Incoming(update_id=0, kind="job")
    return Turn(session, env, inc, Plan(reporter, draft), Fetched(), reply_key=key)


def expire_drafts(session: Session, env: Env) -> int:
    """Drop abandoned drafts, telling each reporter; return how many."""
    done = 0
    for draft in expired_drafts(session, env.now):
        try:
            drop_draft(session, draft)
        except StaleDraft:
            continue  # the reporter came back just now
        turn = _job_turn(session, env, draft, "draft_expired")
        if turn is not None:
            turn.say(turn.t("bot.draft_expired"), kb.main_keyboard(turn.locale))
        done += 1
    return done


def settle_albums(session: Session, env: Env, busy_chats: frozenset = frozenset()) -> int:
    """Acknowledge albums whose photos stopped arriving: one reply per album, not per photo.

    A chat with updates still queued is not settled yet, however long the last photo took.
    """
    quiet = env.now - dt.timedelta(seconds=env.settings.bot_album_settle_seconds)
    drafts = settled_albums(session, quiet)
    chats = reporter_chats(session, [d.reporter_id for d in drafts]) if busy_chats else {}
    done = 0
    for draft in drafts:
        chat = chats.get(draft.reporter_id)
        if chat is not None and int(chat[0]) in busy_chats:
            continue
        data = draft.copy_data()
        quick_first = data.get("quick") and not data.get("prompted")
        data["prompted"] = True
        if not clear_album(session, draft, data):
            continue
        turn = _job_turn(session, env, draft, "album")
        if turn is None:
            continue
        if quick_first:
            turn.say(turn.quick_prompt_text(data), kb.location_keyboard(turn.locale))
        else:
            lead = turn.t("bot.photo_added", count=len(data.get("photos", [])))
            message = turn.prompt(draft.step, data)
            turn.say(f"{lead}\n{message.text}", message.markup)
        done += 1
    return done
