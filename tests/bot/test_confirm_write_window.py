"""A confirmed tip's photos are decoded before the update's transaction (brief F).

On a SQLite file every write transaction holds the one writer lock (app/db_sqlite.py):
the bot decodes a draft's photos, and stores its voice note, in the fetch stage, so a
web worker's tip never waits for them, and submit_tip writes the photo files before its
transaction begins, whatever its caches hold. Retries still make exactly one tip.
"""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import func, make_url, select

from app.bot import conversation
from app.bot.models import InboxUpdate
from app.reports import photos
from app.reports.models import Audio, Tip
from app.reports.storage import LocalMediaStore
from tests.bot.conftest import RunningBot
from tests.bot.test_conversation import (
    REF_PREFIX,
    coloured_jpeg,
    ref_of,
    stored_bytes,
    tip_by_ref,
)
from tests.fake_telegram import FakeUser
from tests.images import phone_jpeg
from tests.layers import centre_of
from tests.writer_lock import writer_lock_free


class Watch:
    """Wraps the real photo pipeline, media store and update body, and notes what ran when.

    Per decode and per file written: whether the writer lock was free, and whether an
    update was being applied (the body of the update's one transaction) at that moment.
    It can also make the first confirm fail after its body ran, before the commit.
    """

    def __init__(self, monkeypatch, settings, *, photo_files: bool = False):
        self.decodes: list[tuple[bool | None, bool]] = []
        self.puts: dict[str, list[tuple[bool | None, bool]]] = {".jpg": [], ".ogg": []}
        self.confirms = 0
        self.fail_first_confirm = False
        self._applying = 0
        real_decode, real_apply = photos.process_photo, conversation.apply_update
        real_put = LocalMediaStore.put

        def now() -> tuple[bool | None, bool]:
            """Whether the writer lock is free, and whether an update is being applied."""
            return writer_lock_free(settings.database_url, wait_s=2), self._applying > 0

        def decode(data, **kw):
            self.decodes.append(now())
            return real_decode(data, **kw)

        def put(store, data, *, suffix=".jpg"):
            if suffix != ".jpg" or photo_files:  # photo files on request (the last test)
                self.puts[suffix].append(now())
            return real_put(store, data, suffix=suffix)

        def apply_update(session, env, inc, plan, fetched):
            self._applying += 1
            try:
                effects = real_apply(session, env, inc, plan, fetched)
            finally:
                self._applying -= 1
            if inc.kind == "callback" and inc.data == "sum:confirm":
                self.confirms += 1
                if self.fail_first_confirm and self.confirms == 1:
                    raise RuntimeError("the process dies before the commit")
            return effects

        monkeypatch.setattr(photos, "process_photo", decode)
        monkeypatch.setattr(conversation, "apply_update", apply_update)
        monkeypatch.setattr(LocalMediaStore, "put", put)

    @staticmethod
    def outside(seen) -> bool:
        """Whether these all ran before any update's transaction, with the lock free."""
        return all(free is not False and not applying for free, applying in seen)


def _count(session_factory, model, *where) -> int:
    with session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_a_confirm_decodes_its_photos_outside_the_write_transaction(
    driver, settings, session_factory, monkeypatch
):
    watch = Watch(monkeypatch, settings)
    driver.photo(coloured_jpeg(1), caption="三辆电动车被撬")
    driver.wait_reply("位置")
    for count in (2, 3):
        driver.photo(coloured_jpeg(count))
        driver.wait_reply(f"共 {count} 张")
    driver.location(*centre_of("G2"))
    driver.wait_reply("请核对")
    checked = list(watch.decodes)  # each photo, once, as it came
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert len(tip.photos) == 3 and tip.description == "三辆电动车被撬"
    confirmed = watch.decodes[len(checked) :]
    assert len(checked) == 3 and len(confirmed) == 3  # cleaned once, not again in submit_tip
    assert watch.outside(checked), checked
    assert watch.outside(confirmed), confirmed
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        assert all(free for free, _ in watch.decodes)


def test_a_confirm_rolled_back_after_decoding_still_makes_one_tip(
    driver, bot, settings, session_factory, monkeypatch
):
    """The first try dies after the tip's rows were written, before the commit; the retry
    decodes and stores again, outside the transaction, and the tip is stored once."""
    watch = Watch(monkeypatch, settings)
    driver.text("📝 报告线索")
    driver.wait_reply("类别")
    driver.press("盗窃")
    driver.wait_reply("描述")
    driver.voice(b"OggS fake opus voice note", duration=7)
    driver.wait_reply("7 秒")
    for count in (1, 2):
        driver.photo(coloured_jpeg(10 + count))
        driver.wait_reply(f"共 {count} 张")
    driver.press("photos:done")
    driver.wait_reply("位置")
    driver.location(*centre_of("G1"))
    driver.wait_reply("请核对")
    checked = len(watch.decodes)
    watch.fail_first_confirm = True
    update_id = driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert watch.confirms == 2  # applied twice: the first rolled back
    confirmed = watch.decodes[checked:]
    assert len(confirmed) == 4 and watch.outside(confirmed), confirmed
    voice = watch.puts[".ogg"]  # the voice note's file, written at each try
    assert len(voice) == 2 and watch.outside(voice), voice
    assert _count(session_factory, Tip) == 1 and len(tip.photos) == 2
    with session_factory() as s:
        audio = s.scalars(select(Audio)).one()
        row = s.scalar(select(InboxUpdate).where(InboxUpdate.update_id == update_id))
        assert row.status == "done" and row.attempts == 2  # counted at each claim
    assert audio.tip_id == tip.id and audio.duration_s == 7
    assert stored_bytes(settings, audio.media_key).startswith(b"OggS")
    driver.command("help")  # one more round trip: a second receipt would have come first
    driver.wait_reply("/mytips")
    assert sum(f"{REF_PREFIX}{tip.ref}" in m.text for m in driver.replies()) == 1
    assert any("failed (attempt 1)" in p for p in bot.logged_problems())


def test_a_photo_refused_at_confirm_is_left_out_and_the_tip_kept(
    sqlite_is_enough, tg, bot_settings, engine, seeded, invite, session_factory
):
    """The pixel limit was lowered while the draft waited: the big photo goes, the tip stays."""
    running = RunningBot(bot_settings, engine).start()
    try:
        user = FakeUser(tg)
        user.command("start", invite())
        user.wait_reply("R-")
        user.photo(phone_jpeg(1280, 960), caption="工地围挡倒了")
        user.wait_reply("位置")
        user.photo(coloured_jpeg(6))
        user.wait_reply("共 2 张")
        user.location(*centre_of("G3"))
        user.wait_reply("请核对")
    finally:
        running.stop()
    running = RunningBot(bot_settings.with_(max_pixels=500_000), engine).start()
    try:
        user.press("sum:confirm")
        tip = tip_by_ref(session_factory, ref_of(user.wait_reply(REF_PREFIX)))
    finally:
        running.stop()
    assert tip.description == "工地围挡倒了" and tip.grid_path.endswith("G3")
    assert [(p.width, p.height) for p in tip.photos] == [(320, 240)]


def test_a_busy_decoder_at_confirm_retries_the_update(
    sqlite_is_enough, tg, bot_settings, engine, seeded, invite, session_factory
):
    """Every decode slot taken for the whole wait: the update fails, is retried, and succeeds."""
    settings = bot_settings.with_(decode_wait_seconds=0.05, bot_retry_base_seconds=0.5)
    running = RunningBot(settings, engine).start()
    try:
        user = FakeUser(tg)
        user.command("start", invite())
        user.wait_reply("R-")
        user.photo(coloured_jpeg(7), caption="井盖丢了")
        user.wait_reply("位置")
        user.location(*centre_of("G4"))
        user.wait_reply("请核对")
        slots = photos.decode_slots  # the bot's own, made when it started
        with contextlib.ExitStack() as held:
            for _ in range(slots.size):
                held.enter_context(slots.hold(timeout=5))
            update_id = user.press("sum:confirm")
            # The failure is recorded on the row (while claimed, it holds the lease mark).
            busy = InboxUpdate.update_id == update_id, InboxUpdate.last_error.like("DecoderBusy%")
            tg.wait(lambda: _count(session_factory, InboxUpdate, *busy))
        tip = tip_by_ref(session_factory, ref_of(user.wait_reply(REF_PREFIX)))
        assert any("DecoderBusy" in p for p in running.logged_problems())
    finally:
        running.stop()
    assert len(tip.photos) == 1 and _count(session_factory, Tip) == 1
    with session_factory() as s:
        row = s.scalar(select(InboxUpdate).where(InboxUpdate.update_id == update_id))
        assert row.status == "done" and row.attempts >= 2


def test_a_confirm_writes_its_photo_files_without_the_writer_lock(
    driver, settings, session_factory, monkeypatch
):
    if make_url(settings.database_url).get_backend_name() != "sqlite":
        pytest.skip("the writer lock is SQLite's; PostgreSQL locks rows")
    watch = Watch(monkeypatch, settings, photo_files=True)
    driver.photo(coloured_jpeg(9), caption="路灯不亮")
    driver.wait_reply("位置")
    driver.location(*centre_of("G1"))
    driver.wait_reply("请核对")
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    written = watch.puts[".jpg"]  # the derivative and the thumbnail
    assert len(tip.photos) == 1 and len(written) == 2
    assert all(free for free, _ in written), written
