"""Whole conversations with the bot over HTTP, against the fake Bot API (QUALITY 13-21)."""

from __future__ import annotations

import datetime as dt
import io
import json

from PIL import Image
from sqlalchemy import select

from app.bot.models import Draft, InboxUpdate
from app.bot.services import load_draft
from app.people.models import Reporter, ReporterIdentity
from app.reports.models import Audio, Landmark, Tip
from app.reports.storage import LocalMediaStore
from tests.bot.conftest import RunningBot
from tests.fake_telegram import FakeUser
from tests.images import COMMENT, phone_jpeg, png_header_only
from tests.layers import centre_of

REF_PREFIX = "编号 "


def ref_of(message) -> str:
    return message.text.split(REF_PREFIX)[1][:8]


def tip_by_ref(session_factory, ref: str) -> Tip:
    with session_factory() as s:
        tip = s.scalar(select(Tip).where(Tip.ref == ref))
        tip.category, tip.photos  # load while the session is open  # noqa: B018
        return tip


def stored_bytes(settings, key: str) -> bytes:
    with LocalMediaStore(settings.media_dir).open(key) as fh:
        return fh.read()


def coloured_jpeg(i: int) -> bytes:
    """A distinct small photo (the intake keeps the same photo only once per tip)."""
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (i * 20 % 256, 255 - i * 20 % 256, i * 7 % 256)).save(buf, "JPEG")
    return buf.getvalue()


def file_a_guided_tip(user: FakeUser, *, text="有人在撬电动车锁", photos=1, where="G3") -> str:
    user.text("📝 报告线索")
    user.wait_reply("类别")
    user.press("盗窃")
    user.wait_reply("描述")
    user.text(text)
    user.wait_reply("照片")
    for i in range(photos):
        user.photo(coloured_jpeg(i))
        user.wait_reply(f"共 {i + 1} 张")
    user.press("photos:done" if photos else "photos:skip")
    user.wait_reply("位置")
    user.location(*centre_of(where), accuracy=15)
    user.wait_reply("请核对")
    user.press("sum:confirm")
    return ref_of(user.wait_reply(REF_PREFIX))


def test_guided_report_with_photo_and_location(driver, tg, session_factory, bot):
    ref = file_a_guided_tip(driver, text="有人在撬电动车锁 <b>*bold*</b> _x_ [l](http://e)")
    tip = tip_by_ref(session_factory, ref)
    assert tip.description == "有人在撬电动车锁 <b>*bold*</b> _x_ [l](http://e)"
    assert tip.category.code == "theft" and tip.channel == "telegram"
    assert tip.grid_path.endswith("G3") and len(tip.photos) == 1
    assert tip.location_source == "device" and tip.accuracy_m == 15
    assert tip.observed_at is not None and tip.observed_at <= tip.received_at
    with session_factory() as s:
        assert s.scalar(select(Draft)) is None
    assert all("parse_mode" not in c.params for c in tg.calls_of("sendMessage"))
    # The summary's buttons are gone once confirmed, replaced by a neutral receipt line. The
    # receipt goes out through the outbox and the edit after the commit: either may come first.
    summary = tg.wait_in_chat(
        driver.chat_id,
        lambda: next(
            (
                m
                for m in driver.replies()
                if m.edits and "请核对" in m.edits[0] and "已提交" in m.text
            ),
            None,
        ),
    )
    assert summary.text == f"线索 {ref} 已提交。" and not summary.buttons()
    assert bot.logged_problems() == []


def test_registration_keeps_only_a_hash(tg, bot, invite, session_factory):
    user = FakeUser(tg)
    user.command("start", invite("volunteer"))
    welcome = user.wait_reply("R-")
    assert "志愿者" in welcome.text
    with session_factory() as s:
        reporter = s.scalar(select(Reporter))
        identity = s.scalar(select(ReporterIdentity))
        assert reporter.role == "volunteer" and reporter.pseudonym in welcome.text
        assert str(user.id) not in identity.external_hash
        assert identity.external_address == str(user.chat_id)
        stored = json.dumps([r.payload for r in s.scalars(select(InboxUpdate))])
    assert "Canary" not in stored and "canary_username" not in stored
    user.command("start")
    assert reporter.pseudonym in user.wait_reply("已登记").text


def test_bad_invite_unregistered_and_citizens(sqlite_is_enough, tg, bot, session_factory):
    stranger = FakeUser(tg)
    stranger.text("hello")
    stranger.wait_reply("/start")
    stranger.command("start", "AAAA-BBBB-CCCC")
    stranger.wait_reply("邀请码无效")
    stranger.command("start")
    assert "市民" in stranger.wait_reply("R-").text
    with session_factory() as s:
        assert s.scalar(select(Reporter.role)) == "citizen"


def test_citizens_may_be_turned_off(sqlite_is_enough, tg, bot_settings, engine, seeded):
    running = RunningBot(bot_settings.with_(bot_allow_citizens=False), engine).start()
    try:
        user = FakeUser(tg)
        user.command("start")
        user.wait_reply("凭邀请")
    finally:
        running.stop()


def test_quick_path_photo_with_caption_then_location(driver, session_factory):
    driver.photo(coloured_jpeg(1), caption="路口红绿灯坏了")
    driver.wait_reply("分钟内发送位置")
    driver.location(*centre_of("G2"))
    summary = driver.wait_reply("请核对")
    assert "路口红绿灯坏了" in summary.text
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert tip.description == "路口红绿灯坏了" and len(tip.photos) == 1
    assert tip.grid_path.endswith("G2")


def test_album_of_ten_with_caption_on_the_third(driver, tg, session_factory):
    for i in range(10):
        driver.photo(coloured_jpeg(i), caption="三楼窗户冒烟" if i == 2 else None, group="alb-1")
    prompt = driver.wait_reply("分钟内发送位置")
    assert "共 10 张" in prompt.text
    driver.location(*centre_of("G1"))
    driver.wait_reply("请核对")
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert tip.description == "三楼窗户冒烟" and len(tip.photos) == 10
    # One acknowledgement for the album, not ten.
    # (Counted by the acknowledgement's own words: the summary also says "10 张" until the
    # bot edits it after the confirm, and that edit races with this check.)
    acks = [m.text for m in driver.replies() if m.text.startswith("已收到照片")]
    assert len(acks) == 1, acks


def test_live_location_keeps_only_the_first_position(driver, tg, session_factory):
    driver.photo(coloured_jpeg(3), caption="可疑车辆跟随")
    driver.wait_reply("位置")
    first = centre_of("G4")
    live = driver.location(*first, live_period=900)
    driver.wait_reply("请核对")
    moved = [driver.move_live_location(live, 40.6 + i / 100, 122.4) for i in range(3)]
    tg.wait(lambda: tg.pending_updates() == 0)
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert (tip.latitude, tip.longitude) == first
    with session_factory() as s:
        edits = [r for r in s.scalars(select(InboxUpdate)) if r.update_id in moved]
        assert len(edits) == 3
        stored = json.dumps([r.payload for r in s.scalars(select(InboxUpdate))])
    assert "40.6" not in stored.replace(str(first[0]), "")  # no track, not even in the inbox


def test_document_with_exif_gps_gives_a_clean_derivative(
    sqlite_is_enough, driver, session_factory, settings
):
    photo = phone_jpeg(800, 600, gps=(40.6406, 122.5052))
    driver.document(photo, caption="仓库门被撬", name="../../etc/passwd.jpg")
    driver.wait_reply("位置")
    driver.text("不知道的地方 xyz")
    summary = driver.wait_reply("请核对")
    assert "无法自动定位" in summary.text
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert len(tip.photos) == 1
    data = stored_bytes(settings, tip.photos[0].derivative_key)
    image = Image.open(io.BytesIO(data))
    assert not image.getexif() and b"CanaryPhoneMaker" not in data and COMMENT not in data
    assert b"passwd" not in repr(tip.__dict__).encode()
    # The camera's position served as a hint; the typed address is kept beside it.
    assert "location_from_photo" in tip.flags and tip.address == "不知道的地方 xyz"


def test_bad_photos_are_refused_and_the_draft_goes_on(sqlite_is_enough, driver, session_factory):
    driver.text("📝 报告线索")
    driver.press("盗窃")
    driver.wait_reply("描述")
    driver.text("有人偷井盖")
    driver.wait_reply("照片")
    driver.photo(png_header_only(14000, 14000))
    driver.wait_reply("尺寸过大")
    driver.document(phone_jpeg()[:500])
    driver.wait_reply("已损坏")
    driver.document(b"%PDF-1.4 not a photo", mime="application/pdf", name="x.pdf")
    driver.wait_reply("不支持")
    driver.document(b"x", claimed_size=25 * 1024 * 1024, caption="井盖在人民路")
    driver.wait_reply("20 MB")
    driver.photo(coloured_jpeg(5))
    driver.wait_reply("共 1 张")
    driver.press("photos:done")
    driver.location(*centre_of("G1"))
    summary = driver.wait_reply("请核对")
    assert "井盖在人民路" in summary.text  # the text of the oversized file is kept
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert len(tip.photos) == 1 and tip.description == "有人偷井盖\n井盖在人民路"


def test_contacts_stickers_polls_forwards_get_help_and_are_not_kept(
    sqlite_is_enough, driver, tg, session_factory
):
    phone = "+8613800138000"
    driver.send(contact={"phone_number": phone, "first_name": "Li", "user_id": 42})
    driver.wait_reply("无法作为线索")
    driver.send(sticker={"file_id": "stk", "width": 1, "height": 1, "type": "regular"})
    driver.wait_reply("无法作为线索")
    driver.send(poll={"id": "p", "question": "q?", "options": []})
    driver.wait_reply("无法作为线索")
    driver.send(
        text="forwarded secret text",
        forward_origin={"type": "user", "sender_user": {"id": 99, "first_name": "Origin"}},
        forward_from={"id": 99, "first_name": "Origin"},
        forward_date=1,
    )
    driver.wait_reply("无法作为线索")
    with session_factory() as s:
        stored = json.dumps([r.payload for r in s.scalars(select(InboxUpdate))])
        assert s.scalar(select(Draft)) is None
    for canary in (phone, "13800138000", "Origin", "forwarded secret", "Li"):
        assert canary not in stored


def test_long_and_odd_text_is_stored_exactly(sqlite_is_enough, driver, tg, session_factory):
    odd = "😀‍🔥 \u200b\u200d\u202eRTL\u202c *a* _b_ `c` <i>&amp;</i> [x](y) "
    text = (odd * 200)[:4096]
    ref = file_a_guided_tip(driver, text=text, photos=0)
    tip = tip_by_ref(session_factory, ref)
    assert tip.description == text and len(tip.description) == 4096
    assert all("parse_mode" not in c.params for c in tg.calls_of("sendMessage"))
    assert all(len(c.params["text"]) <= 4096 for c in tg.calls_of("sendMessage"))


def test_voice_note_is_kept_as_audio(driver, session_factory, settings):
    driver.text("📝 报告线索")
    driver.press("可疑情况")
    driver.wait_reply("描述")
    driver.voice(b"OggS fake opus voice note", duration=7)
    driver.wait_reply("7 秒")
    driver.press("photos:skip")
    driver.location(*centre_of("G1"))
    summary = driver.wait_reply("请核对")
    assert "语音" in summary.text
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    with session_factory() as s:
        audio = s.scalar(select(Audio).where(Audio.tip_id == tip.id))
    assert audio.duration_s == 7 and audio.media_key.endswith(".ogg")
    assert stored_bytes(settings, audio.media_key).startswith(b"OggS")
    assert tip.description == "（语音留言）"


def test_commands(sqlite_is_enough, driver, session_factory):
    driver.command("mytips")
    driver.wait_reply("还没有")
    ref = file_a_guided_tip(driver, photos=0)
    driver.command("mytips")
    assert ref in driver.wait_reply("最近").text
    driver.command("status", ref.lower())
    assert "已受理" in driver.wait_reply(ref).text
    driver.command("status", "T-ZZZZZZ")
    driver.wait_reply("没有找到")
    driver.command("points")
    points = driver.wait_reply("您的积分").text
    assert "0 分" in points and "排第 1 名" in points  # no decisions yet: no points
    driver.command("cancel")
    driver.wait_reply("没有正在填写")
    driver.command("report")
    driver.wait_reply("类别")
    driver.command("cancel")
    driver.wait_reply("已取消")
    driver.command("language")
    driver.wait_reply("Choose")
    driver.press("English")
    assert driver.wait_reply("English").reply_markup["keyboard"][0][0]["text"] == "📝 Report"
    driver.command("help")
    driver.wait_reply("/mytips")
    driver.text("📝 Report")
    driver.wait_reply("category")


def test_landmark_places_a_typed_address(driver, session_factory):
    lat, lon = centre_of("G4")
    with session_factory() as s:
        s.add(
            Landmark(
                grid_code="G4", name="站前广场", aliases=["火车站广场"], latitude=lat, longitude=lon
            )
        )
        s.commit()
    driver.photo(coloured_jpeg(7), caption="打架")
    driver.wait_reply("位置")
    driver.text("火车站广场东门")
    driver.wait_reply("已在地图上找到")
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert tip.grid_path.endswith("G4") and tip.location_source == "map"


def test_edit_and_how_long_ago(sqlite_is_enough, driver, session_factory):
    driver.photo(coloured_jpeg(8), caption="停车场有人打架")
    driver.location(*centre_of("G1"))
    summary = driver.wait_reply("请核对")
    driver.press("ago:30", message=summary)
    driver.tg.wait(lambda: "半小时前" in summary.text)
    driver.press("sum:edit", message=summary)
    driver.tg.wait(lambda: "要修改哪一项" in summary.text)
    driver.press("edit:category", message=summary)
    driver.wait_reply("类别")
    driver.press("抢劫/暴力")
    again = driver.wait_reply("请核对")
    assert "抢劫/暴力" in again.text and "半小时前" in again.text
    driver.press("sum:confirm", message=again)
    driver.press("sum:confirm", message=again)  # a double tap
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert tip.category.code == "robbery_violence"
    assert dt.timedelta(minutes=29) < tip.received_at - tip.observed_at < dt.timedelta(minutes=32)
    driver.tg.wait(lambda: driver.tg.pending_updates() == 0)
    driver.tg.wait(lambda: len(driver.tg.calls_of("answerCallbackQuery")) >= 6)
    with session_factory() as s:
        assert len(s.scalars(select(Tip)).all()) == 1
    assert sum("线索已提交" in m.text for m in driver.replies()) == 1


def test_restart_mid_report_continues_the_draft(
    tg, bot_settings, engine, seeded, invite, session_factory
):
    running = RunningBot(bot_settings, engine).start()
    user = FakeUser(tg)
    user.command("start", invite())
    user.wait_reply("R-")
    user.text("📝 报告线索")
    user.press("盗窃")
    user.text("自行车被偷")
    user.wait_reply("照片")
    user.photo(coloured_jpeg(9))
    user.wait_reply("共 1 张")
    running.stop()
    running = RunningBot(bot_settings, engine).start()
    try:
        user.location(*centre_of("G2"))
        summary = user.wait_reply("请核对")
        assert "自行车被偷" in summary.text and "照片：1 张" in summary.text
        user.press("sum:confirm")
        tip = tip_by_ref(session_factory, ref_of(user.wait_reply(REF_PREFIX)))
        assert len(tip.photos) == 1 and tip.description == "自行车被偷"
    finally:
        running.stop()


def test_abandoned_draft_expires_with_a_message(driver, session_factory, bot):
    from app.bot.conversation import Env, expire_drafts
    from app.db import unit_of_work, utcnow

    driver.text("📝 报告线索")
    driver.wait_reply("类别")
    later = utcnow() + dt.timedelta(hours=2)
    with unit_of_work(session_factory) as s:
        assert expire_drafts(s, Env(bot.runtime.settings, bot.runtime.store, later)) == 1
    bot.runtime._kick_sender()
    driver.wait_reply("超时")
    with session_factory() as s:
        assert s.scalar(select(Draft)) is None


def test_tip_messages_can_be_deleted_after_submitting(
    sqlite_is_enough, tg, bot_settings, engine, seeded, invite, session_factory
):
    running = RunningBot(bot_settings.with_(bot_delete_tip_messages=True), engine).start()
    try:
        user = FakeUser(tg)
        user.command("start", invite())
        user.wait_reply("R-")
        file_a_guided_tip(user, photos=1)
        # The report button, the text, the photo and the location go; the receipt stays.
        tg.wait(lambda: len(tg.calls_of("deleteMessage")) >= 4)
    finally:
        running.stop()


def test_draft_is_per_reporter(sqlite_is_enough, driver, tg, invite, session_factory):
    other = FakeUser(tg)
    other.command("start", invite())
    other.wait_reply("R-")
    driver.text("📝 报告线索")
    other.text("📝 报告线索")
    driver.wait_reply("类别")
    other.wait_reply("类别")
    with session_factory() as s:
        ids = s.scalars(select(Reporter.id)).all()
        assert all(load_draft(s, i).step == "category" for i in ids)
