"""Fault points: silent unless armed; an armed one fires once, in whichever process gets there."""

from __future__ import annotations

import signal
import subprocess
import sys

CALL = "from app.faults import fault_point; fault_point('here'); print('passed')"


def _run(env_dir=None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"} | ({"TIPLINE_FAULT_DIR": str(env_dir)} if env_dir else {})
    return subprocess.run(
        [sys.executable, "-c", CALL], env=env, capture_output=True, text=True, timeout=30
    )


def test_unarmed_points_do_nothing(tmp_path):
    assert _run().stdout.strip() == "passed"
    assert _run(tmp_path).stdout.strip() == "passed"  # the directory set, nothing armed


def test_an_armed_point_fires_once(tmp_path):
    (tmp_path / "here").write_text("kill")
    assert _run(tmp_path).returncode == -signal.SIGKILL
    assert not (tmp_path / "here").exists() and len(list(tmp_path.glob("here.fired-*"))) == 1
    assert _run(tmp_path).stdout.strip() == "passed"  # fired already: the retry goes through
    (tmp_path / "here").write_text("exit")
    assert _run(tmp_path).returncode == 70
