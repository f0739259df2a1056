"""The outbox sender: claim with a lease, pace, send, then mark; each row goes out once.

Pace (Telegram's limits): notifications at most `bot_send_per_second` in any one-second
window overall; replies in a conversation are not held back by that budget (see Pacer);
one message per `bot_chat_interval_seconds` to any chat, and never two to one chat at
once, so a slow send is not overtaken by the next and a chat's messages arrive in the
order they were queued (outbox id order: the claim's order). A 429
holds that chat for its `retry_after` and puts the row back without counting an
attempt; a 403 (the reporter blocked the bot) or a 400 fails the row for good;
network errors retry with backoff. A row is claimed (lease, `last_error =
"sending"`) before it is sent and marked `sent` after, so neither a retry nor a
second task can send it twice; a row whose sender died mid-send is released at
start-up and may go out once more, which is the only way to lose nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import case, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker
from telegram.error import BadRequest, Forbidden, RetryAfter
from telegram.warnings import PTBDeprecationWarning

from app.bot.keyboards import acknowledge_keyboard
from app.bot.services import REPLY_TEMPLATE
from app.db import unit_of_work, utcnow
from app.faults import fault_point
from app.outbox import claims
from app.outbox.claims import claim_due, lease
from app.outbox.models import TELEGRAM_RECIPIENTS, OutboxMessage
from app.outbox.render import render_message
from app.people.identities import reporter_chats, staff_chats
from app.reports.models import Tip

log = logging.getLogger("tipline.bot.sender")
RECORD_DELAY = 0.05  # seconds an outcome may wait to be written with others
MAX_ATTEMPTS = 8
_outbox = OutboxMessage.__table__


@dataclass(frozen=True)
class Outgoing:
    """A claimed row, rendered: where it goes and what it says."""

    id: int
    chat_id: str
    text: str
    markup: dict | None
    attempts: int
    bulk: bool  # a notification (paced overall), not a reply in a conversation


# --- database side ---------------------------------------------------------------------------


def _render(row, locale: str) -> tuple[str, dict | None]:
    """Return the row's text and markup; bot replies were rendered when they were queued."""
    if row.template == REPLY_TEMPLATE:
        return row.params["text"], row.params.get("markup")
    return render_message(row.template, row.params, locale), None


def _lease(session: Session, rows, now: dt.datetime, lease_seconds: float) -> list[Outgoing]:
    """Lease the rows, resolve their chats and render them; undeliverable rows fail at once.

    Rows nobody can receive on Telegram (no linked chat) fail; so does a template
    the catalogue does not know.
    """
    if not rows:
        return []
    lease(session, [r.id for r in rows], now=now, lease_seconds=lease_seconds)
    reporters = reporter_chats(
        session, [r.recipient_id for r in rows if r.recipient_kind == "reporter"]
    )
    staff = staff_chats(session, [r.recipient_id for r in rows if r.recipient_kind == "staff"])
    staff_tips = [r.tip_id for r in rows if r.recipient_kind == "staff" and r.tip_id]
    # Staff alerts about a tip nobody has acknowledged yet carry the "acknowledge" button.
    unacknowledged = {}
    if staff_tips:
        found = select(Tip.id, Tip.ref).where(Tip.id.in_(staff_tips), Tip.status == "new")
        unacknowledged = dict(session.execute(found).all())
    out, failed = [], []
    for row in rows:
        target = (reporters if row.recipient_kind == "reporter" else staff).get(row.recipient_id)
        if target is None:
            failed.append((row.id, "no_telegram_chat"))
            continue
        chat_id, locale = target
        try:
            text, markup = _render(row, locale)
        except (KeyError, IndexError, ValueError):
            failed.append((row.id, "unrenderable"))
            continue
        if row.recipient_kind == "staff" and row.tip_id in unacknowledged:
            markup = acknowledge_keyboard(unacknowledged[row.tip_id], locale)
        bulk = row.template != REPLY_TEMPLATE
        out.append(Outgoing(row.id, chat_id, text, markup, row.attempts + 1, bulk))
    for row_id, reason in failed:
        session.execute(
            update(_outbox).where(_outbox.c.id == row_id).values(status="failed", last_error=reason)
        )
    return out


def claim_outbox(
    session: Session, *, now: dt.datetime | None = None, lease_seconds: float = 60, limit: int = 30
) -> list[Outgoing]:
    """Lease due rows, bot replies first, ready to send."""
    now = now or utcnow()
    replies_first = case((_outbox.c.template == REPLY_TEMPLATE, 0), else_=1)
    rows = claim_due(
        session,
        TELEGRAM_RECIPIENTS,
        now=now,
        lease_seconds=lease_seconds,
        limit=limit,
        order_by=(replies_first,),
        lease_rows=False,  # _lease leases and renders
    )
    return _lease(session, rows, now, lease_seconds)


def claim_replies(
    session: Session,
    dedupe_keys: list[str],
    *,
    now: dt.datetime | None = None,
    lease_seconds: float = 60,
) -> list[Outgoing]:
    """Lease replies just queued in this transaction, so they go out without another claim.

    Not while an earlier reply to the same recipient is still pending (queued by an
    inbox-only process, which leaves its replies to the claim, or not sent yet): these
    rows are then left to the sender's claim, which takes due rows in id order, so a
    chat's replies keep their order whichever process handled each update. (A reply
    waiting for its retry is not due, and is overtaken, as before.)
    """
    if not dedupe_keys:
        return []
    rows = session.execute(
        select(_outbox).where(_outbox.c.dedupe_key.in_(dedupe_keys), _outbox.c.status == "pending")
    ).all()
    if not rows:
        return []
    earlier = select(_outbox.c.id).where(
        _outbox.c.status == "pending",
        _outbox.c.template == REPLY_TEMPLATE,
        tuple_(_outbox.c.recipient_kind, _outbox.c.recipient_id).in_(
            {(r.recipient_kind, r.recipient_id) for r in rows}
        ),
        _outbox.c.id < min(r.id for r in rows),
    )
    if session.scalar(earlier.limit(1)) is not None:
        return []
    return _lease(session, rows, now or utcnow(), lease_seconds)


def any_due(session: Session, *, now: dt.datetime | None = None) -> bool:
    """Whether some pending row is due (a cheap read before taking the write lock)."""
    return claims.any_due(session, TELEGRAM_RECIPIENTS, now=now)


def record_outcomes(session: Session, outcomes: list[tuple], *, now: dt.datetime | None = None):
    """Write what happened to each sent row: (id, "sent"|"failed"|"retry", detail, delay_s)."""
    now = now or utcnow()
    sent = [o[0] for o in outcomes if o[1] == "sent"]
    if sent:
        session.execute(
            update(_outbox)
            .where(_outbox.c.id.in_(sent))
            .values(status="sent", sent_at=now, last_error=None)
        )
        # A bot reply may quote the reporter's words; once delivered it need not be kept.
        session.execute(
            update(_outbox)
            .where(_outbox.c.id.in_(sent), _outbox.c.template == REPLY_TEMPLATE)
            .values(params={})
        )
    for row_id, kind, detail, delay in outcomes:
        if kind == "failed":
            session.execute(
                update(_outbox)
                .where(_outbox.c.id == row_id)
                .values(status="failed", last_error=detail)
            )
        elif kind == "retry":
            counted = detail != "retry_after"  # Telegram asked us to wait: not a failure
            status = "pending"
            if counted:
                status = case((_outbox.c.attempts >= MAX_ATTEMPTS, "failed"), else_="pending")
            session.execute(
                update(_outbox)
                .where(_outbox.c.id == row_id)
                .values(
                    status=status,
                    attempts=_outbox.c.attempts - (0 if counted else 1),
                    next_attempt_at=now + dt.timedelta(seconds=delay),
                    last_error=detail,
                )
            )


def release_sending(session: Session, *, now: dt.datetime | None = None) -> int:
    """Make rows a dead sender had claimed due again (start-up of the one sender)."""
    return claims.release_sending(session, TELEGRAM_RECIPIENTS, now=now)


# --- pace ------------------------------------------------------------------------------------


class Pacer:
    """Even pace for notifications (1/n seconds apart overall); one message per interval per chat.

    Notifications (status changes, staff alerts, escalations) are what Telegram's
    ~30 messages/s limit is about: they are spaced evenly, rather than sent in a
    burst of n and a pause, so any one-second window holds n or fewer even after
    network jitter. A reply answers the reporter's own message: it is paced per
    chat only, so a busy hour of conversations is never queued behind the limit.
    """

    def __init__(
        self,
        per_second: float,
        chat_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.spacing = 1.0 / per_second
        self.chat_interval = chat_interval
        self.clock = clock
        self._next_bulk = 0.0
        self._chat_free: dict[str, float] = {}

    def delay(self, chat_id: str, *, bulk: bool = True) -> float:
        """Seconds until a message to this chat may start (0: now)."""
        now = self.clock()
        overall = self._next_bulk - now if bulk else 0.0
        return max(overall, self._chat_free.get(chat_id, 0.0) - now, 0.0)

    def take(self, chat_id: str, *, bulk: bool = True) -> None:
        """Count a send starting now."""
        now = self.clock()
        if bulk:
            self._next_bulk = max(self._next_bulk, now) + self.spacing
        self._chat_free[chat_id] = now + self.chat_interval
        if len(self._chat_free) > 10_000:  # forget chats that are free again
            self._chat_free = {c: t for c, t in self._chat_free.items() if t > now}

    def hold(self, chat_id: str, seconds: float) -> None:
        """Keep a chat quiet for a while (Telegram's retry_after)."""
        until = self.clock() + seconds
        self._chat_free[chat_id] = max(self._chat_free.get(chat_id, 0.0), until)

    async def wait(self, chat_id: str, *, bulk: bool = True) -> None:
        """Wait for this chat's turn, then take it."""
        while (pause := self.delay(chat_id, bulk=bulk)) > 0:
            await asyncio.sleep(pause)
        self.take(chat_id, bulk=bulk)


async def nap(event: asyncio.Event, seconds: float) -> None:
    """Wait until the event is set or the time is up.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
    that races its timeout, and the loop it sits in then never stops.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def retry_seconds(exc: RetryAfter) -> float:
    """Read retry_after in seconds (PTB 22 warns about its int/timedelta migration)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def outcome_of(exc: Exception | None, attempts: int) -> tuple[str, str | None, float]:
    """Map a send's result to (kind, detail, delay) for record_outcomes."""
    if exc is None:
        return "sent", None, 0.0
    if isinstance(exc, RetryAfter):
        return "retry", "retry_after", retry_seconds(exc)
    if isinstance(exc, Forbidden):
        return "failed", "blocked", 0.0  # the reporter blocked the bot: for good
    if isinstance(exc, BadRequest):
        return "failed", "bad_request", 0.0
    backoff = min(600.0, 2.0**attempts)
    return "retry", type(exc).__name__, backoff


# --- the loop --------------------------------------------------------------------------------


class Sender:
    """Sends outbox rows and direct replies through one pacer."""

    def __init__(
        self,
        client,
        sessions: sessionmaker,
        pacer: Pacer,
        *,
        read_sessions: sessionmaker | None = None,
        batch: int = 30,
    ):
        self.client = client
        self.sessions = sessions
        self.read_sessions = read_sessions or sessions  # SQLite: deferred, so reads take no lock
        self.pacer = pacer
        self.batch = batch
        self.poll_seconds = 0.5
        self._queue: list[Outgoing] = []
        self._results: list[tuple] = []
        self._wake = asyncio.Event()
        self._claim_now = False
        self.max_in_flight = 16  # hides network latency; the pace is counted at the real start
        self._tasks: set[asyncio.Task] = set()
        self._sending: set[str] = set()  # chats with a send under way

    def kick(self) -> None:
        """Rows were queued elsewhere (a timed job, the workflow): look now, not at next poll."""
        self._claim_now = True
        self._wake.set()

    def push(self, items: list[Outgoing]) -> None:
        """Take replies already leased in the handler's transaction: no claim needed."""
        known = {i.id for i in self._queue}
        self._queue.extend(i for i in items if i.id not in known)
        self._wake.set()

    async def send(self, chat_id, text: str, markup: dict | None = None) -> None:
        """Send one plain-text message (no parse mode: reporters' words are never markup)."""
        params = {"chat_id": chat_id, "text": text, "link_preview_options": {"is_disabled": True}}
        if markup:
            params["reply_markup"] = markup
        await self.client.call("sendMessage", params)

    async def send_direct(self, chat_id, text: str, markup: dict | None = None) -> None:
        """Send a reply that has no outbox row (a chat without a reporter), best effort."""
        await self.pacer.wait(str(chat_id), bulk=False)
        try:
            await self.send(chat_id, text, markup)
        except Exception as exc:  # best effort: nothing durable depends on it
            log.warning("direct reply not sent: %s", type(exc).__name__)

    async def _deliver(self, item: Outgoing) -> None:
        error = None
        fault_point("before_send")  # tests/system: the row is claimed, not sent
        try:
            await self.send(item.chat_id, item.text, item.markup)
        except Exception as exc:  # every outcome is recorded, or the row waits for its lease
            error = exc
        finally:
            self._sending.discard(item.chat_id)
        kind, detail, delay = outcome_of(error, item.attempts)
        if kind == "retry" and detail == "retry_after":
            self.pacer.hold(item.chat_id, delay)
        if error is not None:
            log.info("outbox row %d: %s", item.id, detail)
        self._results.append((item.id, kind, detail, delay))
        self._wake.set()

    def _exchange(self, outcomes: list[tuple], limit: int) -> list[Outgoing]:
        """Record what was sent and claim what is due, in one transaction (one fsync)."""
        if not outcomes:
            with self.read_sessions() as session:  # no write lock unless there is work
                if not any_due(session):
                    return []
        with unit_of_work(self.sessions) as session:
            record_outcomes(session, outcomes)
            return claim_outbox(session, limit=limit) if limit else []

    def _dispatch(self) -> float | None:
        """Start every queued message whose turn has come; return the wait for the next one."""
        wait = None
        for item in list(self._queue):
            if len(self._tasks) >= self.max_in_flight:
                break  # a task ending wakes the loop
            if item.chat_id in self._sending:
                continue  # the chat's previous message is still on its way; its end wakes us
            pause = self.pacer.delay(item.chat_id, bulk=item.bulk)
            if pause > 0:
                wait = pause if wait is None else min(wait, pause)
                continue
            self.pacer.take(item.chat_id, bulk=item.bulk)
            self._sending.add(item.chat_id)
            self._queue.remove(item)
            task = asyncio.create_task(self._deliver(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return wait

    async def run(self) -> None:
        """Claim, pace, send, record: until cancelled."""
        next_claim = 0.0
        first_result = None
        try:
            while True:
                now = time.monotonic()
                self._wake.clear()
                if self._results and first_result is None:
                    first_result = now
                claim = len(self._queue) < self.batch and (self._claim_now or now >= next_claim)
                # Outcomes are written in batches: a few milliseconds late costs nothing.
                flush = self._results and (
                    claim or len(self._results) >= 32 or now - first_result >= RECORD_DELAY
                )
                if claim or flush:
                    self._claim_now = self._claim_now and not claim
                    done, self._results, first_result = self._results, [], None
                    limit = 2 * self.batch - len(self._queue) if claim else 0
                    self.push(await asyncio.to_thread(self._exchange, done, limit))
                    if claim:
                        next_claim = time.monotonic() + self.poll_seconds
                wait = self._dispatch()
                now = time.monotonic()
                timeouts = [self.poll_seconds if wait is None else wait]
                if len(self._queue) < self.batch:
                    timeouts.append(next_claim - now)
                if first_result is not None:
                    timeouts.append(first_result + RECORD_DELAY - now)
                await nap(self._wake, max(min(timeouts), 0.001))
        finally:
            await self._finish_in_flight()

    async def _finish_in_flight(self) -> None:
        """On stop, let sends under way end and write every outcome.

        A row left "sending" goes out again after the restart: cancelling the sends, or
        dropping outcomes not yet written, would make a graceful stop send twice.
        """
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        done, self._results = self._results, []
        if done:
            await asyncio.to_thread(self._exchange, done, 0)
