"""`tipline bot --inbox-only`: more processes draining the webhook inbox beside the bot process.

The processes are real `tipline` subprocesses against the fake Bot API, on PostgreSQL
(the command refuses SQLite: one writer). Which process finished which update is
recorded by a trigger on bot_inbox, in the transaction that marks the row done, under
the connection's application_name (one per process): a record exists only for a
handling that committed.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app import create_app
from app.bot import inbox
from app.bot.models import InboxUpdate
from app.bot.sender import claim_outbox, claim_replies, record_outcomes
from app.bot.services import REPLY_TEMPLATE, queue_reply
from app.bot.updates import sanitise_update
from app.config import Settings
from app.db import unit_of_work
from app.i18n import t
from app.outbox.models import OutboxMessage
from app.people.identities import register_telegram_reporter
from app.people.models import Reporter
from app.people.services import create_invites
from app.reports.models import Tip
from tests.bot.test_conversation import coloured_jpeg
from tests.bot.test_inbox_workers import message
from tests.fake_telegram import FakeTelegram, FakeUser, Sent
from tests.layers import centre_of

TIPLINE = Path(sys.executable).with_name("tipline")
SECRET = "inbox-processes-webhook-secret"
NEEDS_PG = (
    "inbox-only processes need PostgreSQL (SQLite has one writer); the PostgreSQL run covers it"
)
PROBLEM = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback")

# Who finished which update: written by the transaction that marks the row done.
DONE_BY = """
CREATE TABLE test_done_by (
    seq bigserial PRIMARY KEY,
    update_id bigint NOT NULL,
    chat_id bigint,
    process text NOT NULL
);
CREATE FUNCTION test_note_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_done_by (update_id, chat_id, process)
    VALUES (NEW.update_id, NEW.chat_id, current_setting('application_name'));
    RETURN NEW;
END $$;
CREATE TRIGGER test_note_done AFTER UPDATE OF status ON bot_inbox
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status = 'done')
    EXECUTE FUNCTION test_note_done();
"""


@pytest.fixture
def pg_only(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip(NEEDS_PG)


class Tipline:
    """`tipline bot [ARGS]` in a subprocess (webhook mode), its log in a file."""

    def __init__(self, settings, tg: FakeTelegram, tmp_path: Path, name: str, *args: str):
        self.name, self.args = name, args
        self.log = tmp_path / f"{name}.log"
        url = settings.database_url
        if url.startswith("postgresql"):  # name the process's connections
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"application_name": name})
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("TELEGRAM_", "TIPLINE_"))
                and k not in ("DATABASE_URL", "REDIS_URL")
            },
            "DATABASE_URL": url,
            "TIPLINE_SECRET_KEY": settings.secret_key,
            "TIPLINE_MEDIA_DIR": str(settings.media_dir),
            "TIPLINE_BOT_INBOX_WORKERS": "2",
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_BASE_URL": tg.api_base_url,
            "TELEGRAM_FILE_BASE_URL": tg.file_base_url,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
        }
        self.cwd = tmp_path
        self.proc: subprocess.Popen | None = None

    def run(self, **env) -> subprocess.CompletedProcess:
        """Run to completion (for the refusals)."""
        return subprocess.run(
            [str(TIPLINE), "bot", *self.args],
            env={**self.env, **env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> Tipline:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(TIPLINE), "bot", *self.args],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=log,
            )
        return self

    def wait_started(self) -> Tipline:
        deadline = time.monotonic() + 30
        while "bot started" not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int:
        """SIGTERM, as systemd stops a unit; SIGKILL only if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def handled(self) -> int:
        """The count the process logs when it stops."""
        found = re.search(r"bot stopped \((\d+) updates handled here\)", self.output())
        assert found, self.output()[-2000:]
        return int(found.group(1))

    def problems(self) -> list[str]:
        return [line for line in self.output().splitlines() if PROBLEM.search(line)]


@pytest.fixture
def processes(tmp_path):
    """Start Tipline processes; whatever the test does, each is stopped at the end."""
    started: list[Tipline] = []

    def start(*procs: Tipline) -> list[Tipline]:
        for proc in procs:
            started.append(proc.start())
        return [proc.wait_started() for proc in procs]

    yield start
    for proc in started:
        proc.stop()


# --- the conversation each chat has --------------------------------------------------------


def command(user: FakeUser, line: str) -> dict:
    name = line.split()[0]
    entity = {"type": "bot_command", "offset": 0, "length": len(name)}
    return {"message": user.message(text=line, entities=[entity])}


def press(user: FakeUser, shown: Sent, data: str) -> dict:
    """A button press on the chat's keyboard message (edits land on it)."""
    return {
        "callback_query": {
            "id": f"cb-{user.chat_id}-{data}",
            "from": {"id": user.id, "is_bot": False, "first_name": "CanaryFirst"},
            "chat_instance": "1",
            "message": {
                "message_id": shown.message_id,
                "date": int(time.time()),
                "chat": {"id": user.chat_id, "type": "private"},
                "text": shown.text,
            },
            "data": data,
        }
    }


def photo(tg: FakeTelegram, user: FakeUser, data: bytes) -> dict:
    file_id = tg.add_file(data)
    size = {"file_id": file_id, "file_unique_id": "u" + file_id, "width": 320, "height": 240}
    return {"message": user.message(photo=[{**size, "file_size": len(data)}])}


def keyboard_message(tg: FakeTelegram, user: FakeUser) -> Sent:
    """A message with buttons the reporter saw earlier (outside the replies counted here)."""
    shown = Sent(tg.new_message_id(), user.chat_id, "⌨", None, {}, time.monotonic())
    with tg.cond:
        tg.by_id[shown.message_id] = shown
    return shown


def conversation(tg: FakeTelegram, user: FakeUser, n: int, code: str) -> list[tuple[dict, str]]:
    """Ten updates from one chat, each with a fragment of the one reply it must get.

    Even chats: the guided flow with a typed address and no photo, then /points.
    Odd chats: a photo and a shared location, then /status of an unknown reference.
    """
    shown = keyboard_message(tg, user)
    welcome = t("bot.welcome_new", "zh", role="", pseudonym="").split("，")[0]
    submitted = t("bot.submitted", "zh", ref="", status="").split("，")[0]
    summary = t("bot.summary.title", "zh")
    points = t("rewards.me", "zh", balance=0, period="", period_points=0, rank=0, rank_of=0)
    steps = [(command(user, f"/start {code}"), welcome)]
    if n % 2 == 0:
        steps += [
            (command(user, "/help"), t("bot.help", "zh")),
            (command(user, "/report"), t("bot.ask_category", "zh")),
            (press(user, shown, "cat:theft"), t("bot.ask_description", "zh")),
            ({"message": user.message(text=f"电瓶车被偷 #{n}")}, t("bot.ask_photos", "zh")),
            (press(user, shown, "photos:skip"), t("bot.ask_location", "zh")),
            ({"message": user.message(text=f"某小区 {n} 号楼")}, summary),
            (press(user, shown, "sum:confirm"), submitted),
            (command(user, "/mytips"), t("bot.mytips.title", "zh")),
            (command(user, "/points"), points.split("：")[0]),
        ]
    else:
        lat, lon = centre_of("G2")
        steps += [
            (command(user, "/report"), t("bot.ask_category", "zh")),
            (press(user, shown, "cat:suspicious"), t("bot.ask_description", "zh")),
            ({"message": user.message(text=f"可疑车辆 #{n}")}, t("bot.ask_photos", "zh")),
            (photo(tg, user, coloured_jpeg(n)), t("bot.photo_added", "zh", count=1)),
            (press(user, shown, "photos:done"), t("bot.ask_location", "zh")),
            ({"message": user.message(location={"latitude": lat, "longitude": lon})}, summary),
            (press(user, shown, "sum:confirm"), submitted),
            (command(user, "/mytips"), t("bot.mytips.title", "zh")),
            (command(user, "/status T-000000"), t("bot.status.not_found", "zh")),
        ]
    return steps


def interleave(chats: list[list], seed: int = 11) -> list:
    """One stream of every chat's updates, chats mixed at random, each chat's order kept."""
    rng = random.Random(seed)
    queues = [list(c) for c in chats]
    out = []
    while any(queues):
        out.append(rng.choice([q for q in queues if q]).pop(0))
    return out


# --- the test the brief asks for -----------------------------------------------------------


def test_two_inbox_only_processes_beside_the_bot(
    pg_only, settings, engine, seeded, session_factory, tg, processes, tmp_path
):
    with engine.begin() as conn:
        conn.exec_driver_sql(DONE_BY)
    with unit_of_work(session_factory) as s:
        codes = create_invites(s, settings.secret_key, "taxi_driver", count=100)
    users = [FakeUser(tg) for _ in range(100)]
    chats = [
        conversation(tg, u, n, code) for n, (u, code) in enumerate(zip(users, codes, strict=True))
    ]
    stream = interleave(chats)
    expected = {
        u.chat_id: [fragment for _, fragment in chat] for u, chat in zip(users, chats, strict=True)
    }

    main, first, second = processes(
        Tipline(settings, tg, tmp_path, "tl-main"),
        Tipline(settings, tg, tmp_path, "tl-inbox-1", "--inbox-only"),
        Tipline(settings, tg, tmp_path, "tl-inbox-2", "--inbox-only"),
    )
    web = create_app(settings.with_(telegram_webhook_secret=SECRET))
    client = web.test_client()
    try:
        for update_id, (update, _) in enumerate(stream, start=50_000):
            response = client.post(
                "/telegram/webhook",
                json={"update_id": update_id, **update},
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
            )
            assert response.status_code == 200
    finally:
        web.extensions["tipline"].engine.dispose()

    tg.wait(lambda: all(len(tg.messages_to(u.chat_id)) >= 10 for u in users), timeout=90)
    for proc in (first, second, main):  # a clean stop ends every send under way
        assert proc.stop() == 0, proc.output()[-2000:]

    # Every update done, each once, by a committed handling; each chat in update order.
    with session_factory() as s:
        statuses = s.execute(select(InboxUpdate.status, func.count()).group_by("status")).all()
        done = s.execute(text("SELECT update_id, chat_id, process FROM test_done_by ORDER BY seq"))
        done = done.all()
    assert statuses == [("done", 1000)]
    assert len(done) == 1000 and len({d.update_id for d in done}) == 1000
    per_chat: dict[int, list[int]] = {}
    for d in done:
        per_chat.setdefault(d.chat_id, []).append(d.update_id)
    assert len(per_chat) == 100 and all(ids == sorted(ids) for ids in per_chat.values())

    # Each process did part of the work, and says how much when it stops.
    by_process = Counter(d.process for d in done)
    assert set(by_process) <= {"tl-main", "tl-inbox-1", "tl-inbox-2"}
    assert by_process["tl-inbox-1"] > 0 and by_process["tl-inbox-2"] > 0, by_process
    for proc in (main, first, second):
        assert proc.handled() == by_process[proc.name], proc.name
        assert proc.problems() == [], proc.name
        assert "bot stopped" in proc.output()

    # Each chat got its ten replies, once each, in order (all through the one sender).
    for user in users:
        got = [m.text for m in tg.messages_to(user.chat_id)]
        want = expected[user.chat_id]
        assert len(got) == 10, (user.chat_id, got)
        for text_, fragment in zip(got, want, strict=True):
            assert fragment in text_, (user.chat_id, fragment, got)
    with session_factory() as s:
        replies = s.execute(
            select(OutboxMessage.status, OutboxMessage.attempts, func.count())
            .where(OutboxMessage.template == REPLY_TEMPLATE)
            .group_by(OutboxMessage.status, OutboxMessage.attempts)
        ).all()
        assert replies == [("sent", 1, 1000)]  # each claimed once, sent once
        assert s.scalar(select(func.count()).select_from(Tip)) == 100
        assert s.scalar(select(func.count()).select_from(Reporter)) == 100

    # The effects sent straight from whichever process handled the update: each once.
    answered = Counter(c.params["callback_query_id"] for c in tg.calls_of("answerCallbackQuery"))
    assert len(answered) == 300 and set(answered.values()) == {1}
    edits = Counter(c.params["message_id"] for c in tg.calls_of("editMessageText"))
    assert len(edits) == 100 and set(edits.values()) == {3}
    assert tg.calls_of("getUpdates") == [] and tg.calls_of("deleteWebhook") == []
    assert tg.calls_of("setWebhook") == []


# --- stopping, refusing --------------------------------------------------------------------


def stranger_updates(tg: FakeTelegram) -> tuple[FakeUser, list[dict]]:
    """A button press and a message from someone not registered: no reporter, direct answers."""
    user = FakeUser(tg)
    shown = keyboard_message(tg, user)
    return user, [
        sanitise_update({"update_id": 70_001, **press(user, shown, "cat:theft")}),
        sanitise_update({"update_id": 70_002, "message": user.message(text="hello")}),
    ]


def test_sigterm_finishes_the_update_under_way_and_gives_back_the_rest(
    pg_only, settings, engine, seeded, session_factory, tg, processes, tmp_path
):
    user, updates = stranger_updates(tg)
    answering = threading.Event()

    def slow_answer(method, params):
        if method == "answerCallbackQuery" and not answering.is_set():
            answering.set()
            time.sleep(3)  # the first update is committed; its answer takes a while
        return None

    tg.fail = slow_answer
    with unit_of_work(session_factory) as s:
        inbox.store_updates(s, updates)
    (worker,) = processes(Tipline(settings, tg, tmp_path, "tl-inbox-a", "--inbox-only"))
    assert answering.wait(20)

    def lease_of(update_id: int):
        with session_factory() as s:
            return s.execute(
                select(InboxUpdate.status, InboxUpdate.last_error, InboxUpdate.attempts).where(
                    InboxUpdate.update_id == update_id
                )
            ).one()

    # The second update became the chat's head when the first committed, and was claimed.
    deadline = time.monotonic() + 20
    while lease_of(70_002).last_error != inbox.LEASED_INBOX_ONLY:
        assert time.monotonic() < deadline, "the second update was not claimed"
        time.sleep(0.05)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0
    assert lease_of(70_001).status == "done"
    assert tuple(lease_of(70_002)) == ("pending", None, 0)  # given back, the try not counted
    assert "gave back 1 claimed updates" in worker.output()
    assert worker.problems() == []
    assert user.replies() == []

    # Due at once: the next process answers the message, once.
    tg.fail = None
    processes(Tipline(settings, tg, tmp_path, "tl-inbox-b", "--inbox-only"))
    assert t("bot.not_registered", "zh") in user.wait_reply().text
    assert lease_of(70_002).status == "done"  # the reply follows the commit
    assert len(user.replies()) == 1
    assert len(tg.calls_of("answerCallbackQuery")) == 1


def test_inbox_only_refuses_polling_mode_and_sqlite(sqlite_url, tg, tmp_path):
    local = Settings(
        database_url=sqlite_url, secret_key="k", media_dir=tmp_path / "m", instance_dir=tmp_path
    )
    proc = Tipline(local, tg, tmp_path, "x", "--inbox-only")
    polling = proc.run(TELEGRAM_WEBHOOK_SECRET="")
    assert polling.returncode == 2 and "needs webhook mode" in polling.stderr
    sqlite = proc.run()
    assert sqlite.returncode == 2
    assert "needs PostgreSQL" in sqlite.stderr and "SQLite has one writer" in sqlite.stderr
    assert tg.calls == []  # refused before any call to Telegram


# --- the database side of sharing the work -------------------------------------------------


def test_the_bot_releases_only_its_own_stale_leases(seeded):
    with unit_of_work(seeded) as s:
        inbox.store_updates(s, [message(1, 7), message(2, 8)])
        mine = inbox.claim_updates(s, limit=1)  # the bot process's, which then died
        theirs = inbox.claim_updates(s, limit=1, mark=inbox.LEASED_INBOX_ONLY)  # a live helper's
    assert [r.update_id for r in mine] == [1] and [r.update_id for r in theirs] == [2]
    with unit_of_work(seeded) as s:  # the bot process starting again
        assert inbox.release_leases(s) == 1
        assert [c.update_id for c in inbox.claim_updates(s, limit=10)] == [1]
    with unit_of_work(seeded) as s:  # the helper's row waits for its lease, or its clean stop:
        assert inbox.retry_now(s, [theirs[0].id]) == 1
        assert [c.update_id for c in inbox.claim_updates(s, limit=10)] == [2]


def test_a_reply_is_not_leased_ahead_of_an_earlier_one(settings, seeded):
    """The bot leases its own replies at once only when none to that reporter is pending."""
    with unit_of_work(seeded) as s:
        reporter = register_telegram_reporter(
            s, settings.secret_key, user_id=41, chat_id=41, invite_code=None, allow_citizens=True
        )
        queue_reply(s, reporter.id, "first, from an inbox-only process", dedupe_key="k:1")
    with unit_of_work(seeded) as s:
        queue_reply(s, reporter.id, "second", dedupe_key="k:2")
        assert claim_replies(s, ["k:2"]) == []  # left to the sender's claim, after k:1
    with unit_of_work(seeded) as s:
        claimed = claim_outbox(s)
    assert [o.text for o in claimed] == ["first, from an inbox-only process", "second"]
    with unit_of_work(seeded) as s:
        record_outcomes(s, [(o.id, "sent", None, 0.0) for o in claimed])
        queue_reply(s, reporter.id, "third", dedupe_key="k:3")
        assert [o.text for o in claim_replies(s, ["k:3"])] == ["third"]  # nothing before it
