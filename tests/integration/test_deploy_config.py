"""deploy/gunicorn.conf.py: a real gunicorn with it logs no client address and no query."""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "gunicorn.conf.py"


def test_settings_for_production():
    conf = runpy.run_path(str(CONF))
    assert conf["worker_tmp_dir"] == "/dev/shm" and conf["preload_app"] is False
    assert conf["max_requests"] > 0 and conf["max_requests_jitter"] > 0
    assert conf["workers"] >= 2 and conf["threads"] >= 1 and conf["worker_class"] == "gthread"
    # No %(h)s (address), %(r)s / %(q)s (query string), %(a)s / %(f)s (agent, referer).
    for atom in ("%(h)s", "%(r)s", "%(q)s", "%(a)s", "%(f)s", "%({"):
        assert atom not in conf["access_log_format"]


def test_access_log_has_no_ip_and_no_query(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gunicorn.db'}",
        "TIPLINE_SECRET_KEY": "deploy-test-key",
        "TIPLINE_MEDIA_DIR": str(tmp_path / "media"),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
    }
    log = tmp_path / "access.log"
    env["GUNICORN_ACCESSLOG"] = str(log)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(
        [str(gunicorn), "-c", str(CONF), "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{port}/healthz?token=CANARY-QUERY"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    assert resp.status == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        while not log.exists() or "/healthz" not in log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
    line = next(ln for ln in log.read_text().splitlines() if "/healthz" in ln)
    assert line.startswith("GET /healthz 200 ")
    assert "CANARY" not in line and "127.0.0.1" not in line and "token" not in line
