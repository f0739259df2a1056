"""The bot process: poll (or drain the webhook's inbox), handle, send, and run the timed jobs.

    getUpdates ──sanitise──▶ bot_inbox (commit) ──▶ next offset        (polling mode)
    POST /telegram/webhook ──▶ bot_inbox (commit) ──▶ 200               (webhook mode)
    bot_inbox ──claim (lease)──▶ per-chat queue ──▶ plan │ fetch files │ apply + done (one commit)
        fetch: downloads, photo checks, a confirm's photo decoding and voice file, all
        before the transaction (on SQLite, the one writer lock), which waits for none of it
    outbox ──claim (lease)──▶ pacer ──▶ sendMessage ──▶ sent │ retry │ failed
    timers: album settling, draft expiry, the response clock, partner webhooks, and
            retention (old tips, the orphan sweep, inbox pruning)

Exactly one bot process per token: a PostgreSQL advisory lock, or on SQLite an
flock() on a file beside the database, held for the life of the process. A
second `tipline bot` exits at once. It keeps Telegram's global sending limit in
one pacer and runs the timed jobs once. Updates of one chat are handled in order
(the inbox hands out only a chat's oldest pending update); chats are handled side
by side, and in webhook mode by `bot_inbox_workers` claiming workers.

Scale-out in webhook mode on PostgreSQL: `tipline bot --inbox-only` processes (any
number, any host) run only the inbox workers, beside the one bot process:

    bot_inbox ──claim (lease "leased:inbox-only")──▶ plan │ fetch │ apply + done + replies
        replies: outbox rows left pending ──▶ the bot process's sender (claims in id order)
        callback answers, edits, deletions, replies to chats without a reporter: sent
        directly after the commit, best effort, as the bot process does

No lock, no polling, no sender, no timed jobs, no webhook calls. A reporter's
replies all leave through the one sender and its pacer, in outbox id order, which
is update order within a chat (an update is claimable only after its chat's
previous one committed); the bot process leases its own replies at once only when
no earlier reply to that reporter is still pending. On SIGTERM every process stops
claiming, lets each chat finish the update under way (STOP_GRACE_SECONDS), and
gives back the rows it claimed but never started; a killed process's rows come
back when their lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine, make_url, text
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError

from app.bot import conversation, inbox
from app.bot.client import TelegramClient, make_client
from app.bot.conversation import Env, Fetched, Message
from app.bot.sender import Pacer, Sender, claim_replies, nap, release_sending, retry_seconds
from app.bot.services import StaleDraft, expired_drafts, queue_reply, settled_albums, store_voice
from app.bot.updates import Incoming, chat_key, read_update, sanitise_update
from app.config import Settings
from app.db import make_engine, make_session_factory, read_only, unit_of_work, utcnow
from app.faults import fault_point
from app.i18n import t
from app.locks import JobLock, clock_lock
from app.partners.delivery import deliver_due  # partner webhooks go out from here too
from app.reports.photos import (
    PhotoRejected,
    ProcessedPhoto,
    configure_decode_slots,
    process_photo_bounded,
)
from app.reports.retention import run_retention
from app.reports.storage import make_media_store

log = logging.getLogger("tipline.bot")
LEASE_SECONDS = 120
MAX_QUEUED = 200  # claimed rows one process holds (polling: a whole getUpdates batch)
# Webhook mode: a process claims only what it can start soon (the thread pool has 8), so
# other inbox processes find work instead of waiting while one holds every chat's head.
WEBHOOK_HOLD = 32
STOP_GRACE_SECONDS = 8.0  # on stop, how long a chat may take to finish its update


class AlreadyRunning(RuntimeError):
    """Another bot process holds this token."""


def inbox_only_refusal(settings: Settings) -> str | None:
    """Say why `tipline bot --inbox-only` cannot run with these settings (None: it can)."""
    if not settings.telegram_webhook_secret:
        return (
            "--inbox-only needs webhook mode (TELEGRAM_WEBHOOK_SECRET set): in polling mode "
            "the one bot process takes the updates from Telegram and handles them itself"
        )
    if make_url(settings.database_url).get_backend_name() != "postgresql":
        return (
            "--inbox-only needs PostgreSQL: SQLite has one writer, so more processes "
            "would only queue for its write lock; run one `tipline bot` instead"
        )
    return None


def _where(exc: BaseException) -> str:
    """Name an error by type and place only: messages may quote what a reporter sent."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{place}"


@contextlib.contextmanager
def consumer_lock(settings: Settings, engine: Engine) -> Iterator[Callable[[], bool]]:
    """Hold the one-consumer-per-token lock; yield a check that it is still held."""
    digest = hashlib.sha256((settings.telegram_bot_token or "").encode()).digest()
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn = engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not got:
                raise AlreadyRunning("another bot process is running with this token")

            def alive() -> bool:
                try:
                    conn.execute(text("SELECT 1"))
                    conn.commit()
                    return True
                except Exception:  # the session (and with it the lock) is gone
                    return False

            yield alive
            with contextlib.suppress(Exception):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            # A pooled connection would keep the session, and the lock with it, alive.
            conn.invalidate()
            conn.close()
        return
    database = make_url(settings.database_url).database
    if database and database != ":memory:":
        path = Path(os.path.abspath(database) + f".bot-{digest.hex()[:12]}.lock")
    else:
        path = settings.instance_dir / f"bot-{digest.hex()[:12]}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning("another bot process is running with this token") from None
        yield lambda: True
    finally:
        os.close(fd)


class BotRuntime:
    """Everything the bot process runs, on one asyncio loop with a small thread pool."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        client=None,
        inbox_only: bool = False,
    ):
        if not settings.telegram_bot_token:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        if inbox_only and (refusal := inbox_only_refusal(settings)):
            raise ValueError(refusal)
        self.settings = settings
        self.inbox_only = inbox_only
        self._own_engine = engine is None
        self.engine = engine or make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.sessions = make_session_factory(self.engine)
        self.read_sessions = make_session_factory(read_only(self.engine))
        self.store = make_media_store(settings)
        self.client: TelegramClient = client or make_client(settings)
        self.webhook_mode = bool(settings.telegram_webhook_secret)
        self._hold = WEBHOOK_HOLD if self.webhook_mode else MAX_QUEUED
        self._lease_mark = inbox.LEASED_INBOX_ONLY if inbox_only else inbox.LEASED
        self.stop_event: asyncio.Event | None = None
        self._stopping = False  # no more claims, and no chat starts another update
        self._unstarted: list[int] = []  # inbox rows claimed, then given back at stop
        self.handled = 0  # updates this process finished (logged at stop)
        self._queues: dict[object, deque] = {}
        self._queued = 0
        self._drains: set[asyncio.Task] = set()
        self._busy_chats: frozenset = frozenset()  # replaced, never mutated: read by job threads
        self._worker_wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sender: Sender | None = None
        self.running = False  # the lock is held and the loops are starting
        self._clock_lock: JobLock | None = None  # made on first use (it may open Redis)

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stop() (or a signal in `tipline bot`)."""
        loop = self._loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=8, thread_name_prefix="bot"))
        self.stop_event = asyncio.Event()
        self._worker_wake = asyncio.Event()
        configure_decode_slots(self.settings.decode_slots)
        pacer = Pacer(self.settings.bot_send_per_second, self.settings.bot_chat_interval_seconds)
        # Inbox-only: the sender's loop never runs; its pacer spaces direct replies.
        self.sender = Sender(self.client, self.sessions, pacer, read_sessions=self.read_sessions)
        try:
            await (self._run_inbox_only() if self.inbox_only else self._run_locked())
        finally:
            if self._own_engine:
                self.engine.dispose()
            log.info("bot stopped (%d updates handled here)", self.handled)

    async def _run_locked(self) -> None:
        with consumer_lock(self.settings, self.engine) as alive:
            await self.client.initialize()
            if not self.webhook_mode:
                await self.client.delete_webhook()
            await asyncio.to_thread(self._release_leases)
            self.running = True
            log.info("bot started (%s)", "webhook inbox" if self.webhook_mode else "polling")
            s = self.settings
            # Webhook mode: several inbox workers claim side by side (the inbox keeps each
            # chat in order). Polling: one, as Telegram allows one getUpdates consumer.
            workers = max(1, s.bot_inbox_workers) if self.webhook_mode else 1
            jobs = [
                self._every(s.bot_album_settle_seconds / 2, self._settle_albums),
                self._every(20, self._expire_drafts),
                self._every(s.bot_clock_seconds, self._run_clock),
                self._every(s.bot_sweep_seconds, self._sweep, first=60),
                self._every(30, lambda: alive() or self._lost_lock()),
                self._every(5, self._deliver_webhooks),
            ]
            if not self.webhook_mode:
                jobs.append(asyncio.create_task(self._poll(), name="poller"))
            await self._serve(
                workers=self._start_workers(workers),
                jobs=jobs,
                sender=asyncio.create_task(self.sender.run(), name="sender"),
            )

    async def _run_inbox_only(self) -> None:
        """Only claim and handle inbox rows, beside the bot process (which sends the replies)."""
        await self.client.initialize()  # no deleteWebhook, no getUpdates: never
        self.running = True
        workers = max(1, self.settings.bot_inbox_workers)
        log.info("bot started (inbox only, %d workers)", workers)
        await self._serve(workers=self._start_workers(workers), jobs=[], sender=None)

    def _start_workers(self, count: int) -> list[asyncio.Task]:
        return [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(count)]

    async def _serve(self, *, workers: list, jobs: list, sender: asyncio.Task | None) -> None:
        """Run until stop() (or a task fails), then wind down: claims, chats, sends."""
        stop = asyncio.create_task(self.stop_event.wait())
        running = [stop, *workers, *jobs, *([sender] if sender else [])]
        try:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop and task.exception():
                    raise task.exception()
        finally:
            for task in [stop, *jobs]:
                task.cancel()
            await asyncio.gather(stop, *jobs, return_exceptions=True)
            await self._wind_down(workers)
            if sender is not None:  # it ran on while the chats finished, sending their replies
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.client.shutdown()

    async def _wind_down(self, workers: list[asyncio.Task]) -> None:
        """Stop claiming, let each chat finish the update under way, give back the rest.

        A claim in flight completes (cancelling it would leave its rows leased for the
        whole lease); rows a chat had not started are released for another process. An
        update still not finished after the grace keeps its lease: it may yet commit.
        """
        self._stopping = True
        self._worker_wake.set()
        pending = [*workers, *self._drains]
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_SECONDS)
        late = [*workers, *self._drains]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        given_back, self._unstarted = self._unstarted, []
        if given_back:
            try:
                await asyncio.to_thread(self._retry_now, given_back)
                log.info("gave back %d claimed updates", len(given_back))
            except Exception as exc:  # their leases run out instead
                log.warning("claimed updates not given back: %s", _where(exc))

    def stop(self) -> None:
        """Ask the bot to stop; safe from any thread."""
        loop, event = self._loop, self.stop_event
        if loop is None or event is None or loop.is_closed():
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    def _lost_lock(self) -> bool:
        log.error("lost the consumer lock (database connection gone); stopping")
        self.stop()
        return False

    def _release_leases(self) -> None:
        with unit_of_work(self.sessions) as session:
            inbox.release_leases(session)
            release_sending(session)

    def _every(self, seconds: float, job: Callable, *, first: float | None = None) -> asyncio.Task:
        """Run a sync job in a thread every so often; a failing run is logged, not fatal."""

        async def loop() -> None:
            await asyncio.sleep(seconds if first is None else first)
            while True:
                try:
                    await asyncio.to_thread(job)
                except Exception as exc:
                    log.warning(
                        "timed job %s failed: %s", getattr(job, "__name__", "?"), _where(exc)
                    )
                await asyncio.sleep(seconds)

        return asyncio.create_task(loop())

    # --- taking updates ----------------------------------------------------------------------

    async def _poll(self) -> None:
        """Long-poll Telegram; commit each batch to the inbox before confirming it."""
        offset, pause = None, 1.0
        while True:
            try:
                raw = await self.client.raw_updates(offset, self.settings.bot_poll_timeout)
                payloads = [p for p in map(sanitise_update, raw) if p is not None]
                if payloads:
                    room = max(0, MAX_QUEUED - self._queued)
                    self._enqueue(await asyncio.to_thread(self._store, payloads, room))
                    fault_point("update_stored")  # tests/system: stored, not handled
                ids = [p["update_id"] for p in payloads]
                if ids:
                    offset = max(ids) + 1  # confirms the batch: it is committed
                pause = 1.0
            except (InvalidToken, Forbidden):
                log.error("Telegram refused the bot token; stopping")
                self.stop()
                return
            except RetryAfter as exc:
                await asyncio.sleep(retry_seconds(exc))
            except Exception as exc:  # network down, database restarting: wait and go on
                log.warning("polling failed: %s", _where(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

    def _store(self, payloads: list[dict], claim: int) -> list[inbox.Claimed]:
        """Store a batch and, in the same transaction, lease it for this process to handle."""
        with unit_of_work(self.sessions) as session:
            inbox.store_updates(session, payloads)
            if not claim:
                return []
            return inbox.claim_updates(
                session, lease_seconds=LEASE_SECONDS, limit=claim, mark=self._lease_mark
            )

    # --- handling updates --------------------------------------------------------------------

    async def _work(self) -> None:
        """Claim due rows the poller did not hand over (retries, webhook mode, a restart)."""
        while not self._stopping:
            self._worker_wake.clear()
            if self._queued < self._hold:
                self._enqueue(await asyncio.to_thread(self._claim, self._hold - self._queued))
            await nap(self._worker_wake, 0.25)

    def _enqueue(self, claimed: list[inbox.Claimed]) -> None:
        """Hand claimed rows to per-chat queues: one chat in update order, chats side by side."""
        if self._stopping:  # a claim that was under way when the stop came
            self._unstarted.extend(row.id for row in claimed)
            return
        for row in claimed:
            key = chat_key(row.payload) or ("update", row.update_id)
            queue = self._queues.get(key)
            self._queued += 1
            if queue is None:
                self._queues[key] = deque([row])
                task = asyncio.create_task(self._drain(key))
                self._drains.add(task)
                task.add_done_callback(self._drains.discard)
            else:
                queue.append(row)
        if claimed:
            self._note_busy()

    def _claim(self, limit: int) -> list[inbox.Claimed]:
        with self.read_sessions() as session:  # a read first: no write lock when idle
            if not inbox.any_due(session):
                return []
        with unit_of_work(self.sessions) as session:
            return inbox.claim_updates(
                session, lease_seconds=LEASE_SECONDS, limit=limit, mark=self._lease_mark
            )

    async def _drain(self, key) -> None:
        queue = self._queues[key]
        started = None
        try:
            while queue and not self._stopping:
                row = started = queue[0]
                try:
                    await self.process(row)
                except Exception as exc:  # never let one chat's queue die silently
                    log.error("update %d not processed: %s", row.update_id, _where(exc))
                queue.popleft()
                started = None
                self._queued -= 1
        finally:
            # Stopping: rows not begun go back; one cut off mid-way keeps its lease.
            self._unstarted.extend(row.id for row in queue if row is not started)
            self._queued -= len(queue)
            self._queues.pop(key, None)
            self._note_busy()
            self._worker_wake.set()

    def _note_busy(self) -> None:
        self._busy_chats = frozenset(k for k in self._queues if isinstance(k, int))

    async def process(self, row: inbox.Claimed) -> None:
        """Handle one claimed update: plan, fetch, apply (one transaction), then reply."""
        inc = read_update(row.payload)
        plan = None
        try:
            plan = await asyncio.to_thread(self._plan, inc)
            fetched = await self._fetch(plan, inc)
            effects, replies = await asyncio.to_thread(self._apply, row, inc, plan, fetched)
            fault_point("update_applied")  # tests/system: committed, replies not sent
        except (StaleDraft, inbox.AlreadyHandled):
            await asyncio.to_thread(self._retry_now, [row.id])
            self._worker_wake.set()
            return
        except Exception as exc:
            await self._failed(row, inc, plan, exc)
            return
        self.handled += 1
        if replies:
            self.sender.push(replies)
        elif effects.replies and not self.inbox_only:
            self.sender.kick()  # held back behind an earlier reply: the claim keeps the order
        await self._perform(inc, effects)

    def _plan(self, inc: Incoming) -> conversation.Plan:
        with self.read_sessions() as session:
            return conversation.plan_update(session, self.settings, inc)

    def _apply(self, row, inc, plan, fetched) -> tuple[conversation.Effects, list]:
        """The update's one transaction: its changes, its replies (leased to us), done.

        An inbox-only process leases no replies: it has no sender, the bot process's
        sender claims them.
        """
        env = Env(self.settings, self.store, utcnow())
        with unit_of_work(self.sessions) as session:
            effects = conversation.apply_update(session, env, inc, plan, fetched)
            replies = []
            if not self.inbox_only:
                replies = claim_replies(session, effects.replies, now=env.now)
            inbox.finish_update(session, row.id, now=env.now)
        return effects, replies

    def _retry_now(self, inbox_ids: list[int]) -> None:
        with unit_of_work(self.sessions) as session:
            inbox.retry_now(session, inbox_ids)

    async def _fetch(self, plan, inc: Incoming) -> Fetched:
        """Download what the update needs, and do its slow work, before any transaction starts.

        A confirm's photos are decoded here (in the decode slots, as everywhere) and its
        voice note written to the store, so no other writer (a web worker's tip) waits for
        them behind this update's transaction. A busy decoder or a full disk raises: the
        update is retried.
        """
        wanted = conversation.files_to_fetch(plan, inc)
        fetched = Fetched()
        for ref in wanted.checks:
            try:
                data = await self.client.download(ref.file_id)
            except BadRequest:  # "file is too big", or gone
                fetched.checks[ref.file_id] = "too_big"
                continue
            fetched.checks[ref.file_id] = await asyncio.to_thread(self._check_photo, data)
        downloads = [*wanted.photos, *([wanted.voice] if wanted.voice else [])]
        if downloads:
            results = await asyncio.gather(*(self._download_kept(r.file_id) for r in downloads))
            fetched.files = {r.file_id: d for r, d in zip(downloads, results, strict=True) if d}
        files = fetched.files
        photos = [(r.file_id, files[r.file_id]) for r in wanted.photos if r.file_id in files]
        if photos:
            fetched.cleaned = await asyncio.to_thread(self._clean_photos, photos)
        voice = files.get(wanted.voice.file_id) if wanted.voice else None
        if voice:
            fetched.voice_key = await asyncio.to_thread(store_voice, self.store, voice)
        return fetched

    async def _download_kept(self, file_id: str) -> bytes | None:
        try:
            return await self.client.download(file_id)
        except BadRequest:
            return None  # no longer on Telegram's side: the tip goes ahead without it

    def _clean(self, data: bytes) -> ProcessedPhoto:
        """Run the photo pipeline in a decode slot, as the web intake does."""
        return process_photo_bounded(
            data, timeout=self.settings.decode_wait_seconds, max_pixels=self.settings.max_pixels
        )

    def _check_photo(self, data: bytes) -> str:
        """Run the photo pipeline once now, so a bad photo is refused while the reporter is here."""
        try:
            self._clean(data)
        except PhotoRejected as exc:
            return exc.code
        return "ok"

    def _clean_photos(self, photos: list[tuple[str, bytes]]) -> dict[str, ProcessedPhoto]:
        """Clean a confirmed draft's photos, by file id; a refused one is left out, the tip kept."""
        cleaned = {}
        for file_id, data in photos:
            with contextlib.suppress(PhotoRejected):  # checked when it came: rare
                cleaned[file_id] = self._clean(data)
        return cleaned

    async def _failed(self, row, inc: Incoming, plan, exc: Exception) -> None:
        where = _where(exc)
        log.warning("update %d failed (attempt %d): %s", row.update_id, row.attempts, where)
        reporter = plan.reporter if plan and inc.chat_id is not None and inc.private else None
        dead = await asyncio.to_thread(self._fail, row, where, reporter)
        if dead:
            log.error("update %d dead-lettered after %d attempts", row.update_id, row.attempts)
            if inc.chat_id is not None and inc.private:
                if reporter is None:  # nobody to queue it to: straight to the chat
                    await self.sender.send_direct(inc.chat_id, t("bot.error.dead", "zh"))
                elif not self.inbox_only:
                    self.sender.kick()
                if inc.callback_id:
                    await self._best_effort(
                        "answerCallbackQuery", callback_query_id=inc.callback_id
                    )
        else:
            self._worker_wake.set()

    def _fail(self, row: inbox.Claimed, error: str, reporter) -> bool:
        """Count the failure; when it dead-letters the row, queue the reporter's apology with it.

        Queued in the same transaction, the apology goes out once, after the replies
        before it, from whichever process the update failed in.
        """
        with unit_of_work(self.sessions) as session:
            dead = inbox.fail_update(
                session,
                row.id,
                error=error,
                max_attempts=self.settings.bot_max_attempts,
                retry_base_seconds=self.settings.bot_retry_base_seconds,
            )
            if dead and reporter is not None:
                text = t("bot.error.dead", reporter.locale)
                queue_reply(session, reporter.id, text, dedupe_key=f"upd:{row.update_id}:dead")
            return dead

    async def _best_effort(self, method: str, **params) -> None:
        try:
            await self.client.call(method, params)
        except TelegramError as exc:
            log.info("%s not done: %s", method, type(exc).__name__)

    async def _perform(self, inc: Incoming, effects: conversation.Effects) -> None:
        """After the commit: answer the button, edit its message, send direct replies."""
        if inc.callback_id:
            params = {"callback_query_id": inc.callback_id}
            if effects.answer:
                params["text"] = effects.answer
            await self._best_effort("answerCallbackQuery", **params)
        if effects.edit and inc.message_id is not None:
            await self._edit(inc, effects.edit)
        for message in effects.direct:
            await self.sender.send_direct(inc.chat_id, message.text, message.markup)
        for message_id in effects.delete:
            await self._best_effort("deleteMessage", chat_id=inc.chat_id, message_id=message_id)

    async def _edit(self, inc: Incoming, message: Message) -> None:
        params = {"chat_id": inc.chat_id, "message_id": inc.message_id, "text": message.text}
        if message.markup:
            params["reply_markup"] = message.markup
        await self._best_effort("editMessageText", **params)

    # --- timed jobs --------------------------------------------------------------------------

    def _env(self) -> Env:
        return Env(self.settings, self.store, utcnow())

    def _settle_albums(self) -> None:
        quiet = utcnow() - dt.timedelta(seconds=self.settings.bot_album_settle_seconds)
        with self.read_sessions() as session:  # a read first: no write lock when idle
            if not settled_albums(session, quiet, limit=1):
                return
        with unit_of_work(self.sessions) as session:
            # Busy: queued here, or still in the inbox (claims take one update per chat).
            busy = self._busy_chats | inbox.pending_chats(session)
            settled = conversation.settle_albums(session, self._env(), busy)
        if settled:
            self._kick_sender()

    def _expire_drafts(self) -> None:
        with self.read_sessions() as session:
            if not expired_drafts(session, utcnow(), limit=1):
                return
        with unit_of_work(self.sessions) as session:
            expired = conversation.expire_drafts(session, self._env())
        if expired:
            self._kick_sender()

    def _run_clock(self) -> None:
        try:
            from app.reports.clock import run_clock
        except ImportError:  # the response clock is not installed in this build
            return
        if self._clock_lock is None:
            self._clock_lock = clock_lock(
                self.settings.redis_url,
                self.settings.bot_clock_seconds,
                prefix=self.settings.redis_prefix,
            )
        escalated = self._clock_lock.run(self.sessions, lambda s: run_clock(s, now=utcnow()))
        if escalated:
            self._kick_sender()

    def _sweep(self) -> None:
        """Retention, which ends with the orphan sweep and prunes handled inbox rows."""
        run_retention(self.sessions, self.store, self.settings)

    def _deliver_webhooks(self) -> None:
        """Send one batch of due partner webhooks."""
        deliver_due(self.sessions, self.settings, read_sessions=self.read_sessions)

    def _kick_sender(self) -> None:
        """Wake the sender from a job thread."""
        if self._loop is not None and self.sender is not None:
            self._loop.call_soon_threadsafe(self.sender.kick)


def run_bot(settings: Settings, *, inbox_only: bool = False) -> None:
    """`tipline bot [--inbox-only]`: run until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def main() -> None:
        runtime = BotRuntime(settings, inbox_only=inbox_only)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runtime.stop)
        await runtime.run()

    asyncio.run(main())
