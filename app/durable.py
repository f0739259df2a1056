"""Files that survive a crash: a temp file beside the target, and a directory's fsync."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temp_beside(dest: Path) -> Path:
    """Make an empty private temp file in dest's directory, so a rename over dest is atomic."""
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    return Path(name)


def fsync_dir(directory: Path) -> None:
    """Persist a directory's entries (a rename is only durable once its directory is)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
