"""Chromium for the tests that drive a real browser: Debian's package, driven by Playwright.

Browsers cannot be downloaded on these machines, so Playwright launches the system's
Chromium with the flags that keep it off the network it must not reach.
"""

from __future__ import annotations

import shutil
from typing import Final

LAUNCH_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The system's Chromium (Debian's `/usr/bin/chromium` first), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None
