"""Start and stop the gunicorn servers the benchmarks load, and read their workers' memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.report import ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60) -> None:
    """Poll until the URL answers (a gunicorn worker imports the app lazily)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 (loopback only)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start")


def start_gunicorn(
    app: str, env: dict, port: int, *, workers: int = 2, threads: int = 1
) -> subprocess.Popen:
    """gunicorn on 127.0.0.1:port with the given workers; wait for it before returning."""
    proc = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            app,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz")
    except RuntimeError:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the master (it stops its workers), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers under its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesised name, which may hold spaces) is the parent.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS over the process's life) from /proc/<pid>/status, in KiB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def prepare(db_url: str, media: Path) -> dict:
    """The environment of a Tipline server on db_url: database upgraded, demo city seeded."""
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "TIPLINE_SECRET_KEY": "bench-secret",
        "TIPLINE_MEDIA_DIR": str(media),
    }
    subprocess.run(
        [str(BIN / "tipline"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    subprocess.run(
        [str(BIN / "tipline"), "demo", "seed"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    return env
