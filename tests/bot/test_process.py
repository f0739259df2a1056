"""The real `tipline bot` process against the fake Bot API: a tip end to end, and SIGKILL."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from app.db import unit_of_work
from app.people.services import create_staff_user, issue_staff_token
from tests.bot.test_conversation import REF_PREFIX, coloured_jpeg, ref_of, tip_by_ref
from tests.fake_telegram import FakeUser
from tests.images import COMMENT, phone_jpeg
from tests.layers import centre_of

TIPLINE = Path(sys.executable).with_name("tipline")
TIP_TEXT = "后备箱里有可疑包裹 canary-tip-text"


class BotProcess:
    """`tipline bot` in a subprocess, its log in a file."""

    def __init__(self, settings, tg, tmp_path: Path):
        self.log = tmp_path / f"bot-{time.monotonic_ns()}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "TIPLINE_SECRET_KEY": settings.secret_key,
            "TIPLINE_MEDIA_DIR": str(settings.media_dir),
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_BASE_URL": tg.api_base_url,
            "TELEGRAM_FILE_BASE_URL": tg.file_base_url,
        }
        self.env.pop("TELEGRAM_WEBHOOK_SECRET", None)
        self.cwd = tmp_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> BotProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(TIPLINE), "bot"], env=self.env, cwd=self.cwd, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while "bot started" not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "the bot process did not start"
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def run_bot(settings, engine, seeded, tg, tmp_path):
    started: list[BotProcess] = []

    def start() -> BotProcess:
        started.append(BotProcess(settings, tg, tmp_path).start())
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


def test_real_process_end_to_end(run_bot, tg, invite, app, session_factory, settings):
    bot = run_bot()
    driver = FakeUser(tg)
    driver.command("start", invite("taxi_driver"))
    assert "出租车司机" in driver.wait_reply("R-").text
    # The quick path (the guided one is driven in test_conversation): photo, location, confirm.
    driver.photo(phone_jpeg(1280, 960, gps=(40.6406, 122.5052)), caption=TIP_TEXT)
    driver.wait_reply("位置")
    driver.location(*centre_of("G3"), accuracy=10)
    driver.wait_reply("请核对")
    driver.press("sum:confirm")
    ref = ref_of(driver.wait_reply(REF_PREFIX))

    with unit_of_work(session_factory) as s:
        boss = create_staff_user(s, "boss", "supervisor", grids=["C"])
        token = issue_staff_token(s, "boss")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    body = client.get(f"/api/v1/staff/tips/{ref}", headers=auth).get_json()
    assert body["grid"]["code"] == "G3" and body["reporter"]["pseudonym"].startswith("R-")
    assert len(body["photos"]) == 1
    photo = client.get(body["photos"][0]["url"], headers=auth)
    assert photo.status_code == 200 and photo.mimetype == "image/jpeg"
    assert not Image.open(io.BytesIO(photo.data)).getexif() and COMMENT not in photo.data

    response = client.post(
        f"/api/v1/staff/tips/{ref}/actions", json={"action": "acknowledge"}, headers=auth
    )
    assert response.status_code == 200, response.get_json()
    assert ref in driver.wait_reply("处理中").text
    assert tip_by_ref(session_factory, ref).status == "acknowledged"
    assert boss.id

    assert bot.stop() == 0
    logged = bot.output()
    assert "bot stopped" in logged
    for secret in (tg.token, "canary-tip-text", "CanaryFirst", "40.6", str(driver.id)):
        assert secret not in logged


def test_sigkill_mid_report_then_the_same_draft_finishes(run_bot, tg, invite, session_factory):
    bot = run_bot()
    driver = FakeUser(tg)
    driver.command("start", invite())
    driver.wait_reply("R-")
    driver.photo(coloured_jpeg(4), caption="电瓶车电瓶被偷")
    driver.wait_reply("位置")
    bot.kill()  # after the photo, before the location
    driver.location(*centre_of("G1"))  # sent while no bot runs
    run_bot()
    summary = driver.wait_reply("请核对")
    assert "电瓶车电瓶被偷" in summary.text and "照片：1 张" in summary.text
    driver.press("sum:confirm")
    tip = tip_by_ref(session_factory, ref_of(driver.wait_reply(REF_PREFIX)))
    assert tip.description == "电瓶车电瓶被偷" and len(tip.photos) == 1
    assert tip.grid_path.endswith("G1")


def test_a_second_bot_process_exits(run_bot, settings, tg, tmp_path):
    run_bot()
    second = subprocess.run(
        [str(TIPLINE), "bot"],
        env=BotProcess(settings, tg, tmp_path).env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 2 and "another bot process" in second.stderr
