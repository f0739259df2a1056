"""Fault points: named places where the system tests can kill a process to prove nothing is lost.

A point does nothing unless the environment variable TIPLINE_FAULT_DIR names a
directory (only tests/system sets it). A test arms a point by creating a file
named after it in that directory; the first process to reach the point claims
the file with an atomic rename (so the fault fires exactly once, across workers
and restarts) and then performs the action written in the file:

    kill   SIGKILL this process (the default: a crash, no cleanup, no response)
    exit   os._exit(70) (a crash that still closes the process's sockets at once)

The points (grep for fault_point): photo_written (the file is renamed into place,
its row not committed), request_committed (the commit is done, no response yet),
update_stored (a Telegram update is in the inbox, not handled), update_applied (the
update's transaction is committed, its replies not sent), before_send (an outbox
row is claimed, not sent).
"""

from __future__ import annotations

import functools
import os
import signal

ENV = "TIPLINE_FAULT_DIR"


@functools.cache
def _fault_dir() -> str | None:
    """Read the directory once per process; production never sets it."""
    return os.environ.get(ENV) or None


def fault_point(name: str) -> None:
    """Fire the fault armed for this point, if any (a no-op unless TIPLINE_FAULT_DIR is set)."""
    directory = _fault_dir()
    if directory is None:
        return
    armed = os.path.join(directory, name)
    fired = f"{armed}.fired-{os.getpid()}"
    try:
        os.rename(armed, fired)  # atomic: one process in the whole system wins
    except OSError:
        return
    with open(fired) as fh:
        action = fh.read().strip() or "kill"
    if action == "exit":
        os._exit(70)
    os.kill(os.getpid(), signal.SIGKILL)
