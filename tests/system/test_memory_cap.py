"""A web worker under a memory cap receives bombs and large photos at once (QUALITY 1, 9).

gunicorn runs under RLIMIT_AS = 640 MiB (an idle worker with its threads reserves
about 400 MiB of address space; app/native_memory.py says why it once reserved 690 MiB
and died under this cap). 20 large photos and decompression bombs arrive in parallel: the
bombs get 422 `image_too_large` before any decoding, the large photos 201 (or 503
with Retry-After when every decode slot stays busy, and then 201 on retry), nothing
gets a 500, and no worker is killed or restarted.
"""

from __future__ import annotations

import io
import os
import resource
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from tests.images import png_header_only
from tests.system import canaries, tally
from tests.system.harness import (
    WebServer,
    noise_jpeg,
    post_tip,
    submit_until_acknowledged,
    tip_by_description,
)

CAP = 640 * 1024 * 1024  # 600 was reached once by a busy run (594-608 MiB peaks)
LARGE_UPLOADS = 20


def _jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _large_photos() -> list[bytes]:
    """Two 12 MP phone-sized photos of noise (about 10 MB each) and a 63 MP plain one."""
    noisy = [
        _jpeg(Image.frombytes("RGB", (4000, 3000), os.urandom(4000 * 3000 * 3)), 90)
        for _ in range(2)
    ]
    return [*noisy, _jpeg(Image.new("RGB", (9000, 7000), (90, 120, 90)), 10)]


def _bombs() -> list[tuple[str, bytes]]:
    """A 14000x14000 PNG header on a few bytes, and a real 10000x10000 PNG of 97 KB."""
    buf = io.BytesIO()
    Image.new("L", (10000, 10000)).save(buf, "PNG")
    return [("bomb-14k.png", png_header_only(14000, 14000)), ("bomb-10k.png", buf.getvalue())]


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_bombs_and_large_photos_under_a_memory_cap(system_env):
    large, bombs = _large_photos(), _bombs()
    jobs = [("large", [large[i % len(large)]]) for i in range(LARGE_UPLOADS)]
    jobs += [("bomb", [bomb]) for bomb in bombs * 3]
    # A tip with a good photo and a bomb: refused whole, naming the bomb.
    jobs += [("mixed", [noise_jpeg(), bombs[0]]) for _ in range(2)]
    sent = [(kind, photos, canaries.tip_fields(), str(uuid.uuid4())) for kind, photos in jobs]

    limits = {resource.RLIMIT_AS: (CAP, CAP)}
    with WebServer(system_env, workers=2, rlimits=limits) as web:
        pids = web.worker_pids()
        idle_kb = max(_status_kb(pid, "VmSize") for pid in pids)
        assert idle_kb < CAP // 1024 * 0.75, f"an idle worker already reserves {idle_kb} kB"

        def send(job):
            _, photos, fields, key = job
            return post_tip(web.url(), fields=fields, photos=photos, key=key, timeout=60)

        with ThreadPoolExecutor(max_workers=len(sent)) as pool:
            answers = list(pool.map(send, sent))

        retried = 0
        for (kind, photos, fields, key), (status, body, head) in zip(sent, answers, strict=True):
            if kind == "large":
                assert status in (201, 503), (status, body)
                if status == 503:
                    assert int(head["retry-after"]) > 0
                    body, _ = submit_until_acknowledged(
                        web.url(), fields=fields, photos=photos, key=key, timeout=60
                    )
                    retried += 1
                stored = tip_by_description(system_env, fields["description"])
                assert [t["ref"] for t in stored] == [body["ref"]]
                assert len(stored[0]["photos"]) == 1
            else:
                assert (status, body["code"]) == (422, "image_too_large"), (status, body)
                assert list(body["errors"]["photos"]) == [str(len(photos) - 1)]  # the bomb
                assert tip_by_description(system_env, fields["description"]) == []

        # The reporter still holds a refused tip: without the bomb it is taken.
        kind, photos, fields, _ = next(job for job in sent if job[0] == "mixed")
        status, body, _ = post_tip(
            web.url(), fields=fields, photos=photos[:1], key=str(uuid.uuid4()), timeout=60
        )
        assert status == 201, body

        assert web.worker_pids() == pids, "a worker was killed or restarted"
        peak_kb = max(_status_kb(pid, "VmPeak") for pid in pids)
        rss_kb = max(_status_kb(pid, "VmHWM") for pid in pids)
        log = web.output()
    for sign in ("WORKER TIMEOUT", "SIGKILL", "Exception in worker process", "Traceback"):
        assert sign not in log, sign
    tally.add("tips acknowledged", LARGE_UPLOADS + 1)
    tally.add("bombs refused", sum(1 for kind, *_ in sent if kind != "large"))
    tally.add("large uploads retried after 503", retried)
    tally.put("capped worker idle address space MiB", idle_kb // 1024)
    tally.put("capped worker peak address space MiB", peak_kb // 1024)
    tally.put("capped worker peak RSS MiB", rss_kb // 1024)
