"""What every browser test shares: when they run, how Chromium starts, how long to wait."""

from __future__ import annotations

import os

import pytest

# Browser tests need Debian's Chromium; CI sets TIPLINE_BROWSER_TESTS=1 after installing it.
browser_tests = pytest.mark.skipif(
    os.environ.get("TIPLINE_BROWSER_TESTS") != "1",
    reason="browser tests run with TIPLINE_BROWSER_TESTS=1 (CI sets it; needs /usr/bin/chromium)",
)

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out of a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 20_000  # generous: CI machines are shared; nothing here is a timing assertion
