"""Debian's Chromium under Playwright, headless and offline (docs/maintainers/recipes.md 1): shared by the browser
tests and ``screenshot.py``. Playwright downloads no browser here: it drives ``/usr/bin/chromium``."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("CITYTWIN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # no DNS at all: nothing but loopback
]
VIEWPORT = {"width": 1600, "height": 900}


def launch_chromium(playwright):
    """A headless Chromium (``playwright`` is the object ``sync_playwright()`` gives)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
