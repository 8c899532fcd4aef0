"""Take the README's dashboard screenshot during a ``twin demo`` run.

    python tests/browser/screenshot.py                      # -> docs/dashboard.png
    python tests/browser/screenshot.py --out /tmp/d.png --speed 60 --grid bund10.nc

It starts ``twin demo --http 0`` (its own embedded broker, the live twin, the storyline's feeds),
reads the ``dashboard: http://127.0.0.1:PORT/#token=...`` line it prints, opens that page in headless
Chromium (Debian's, through Playwright; `tests.browser.chromium`) and watches the alert count. Each
time more alerts are active than ever before (at least ``--min-alerts``), it takes the screenshot
again, so the file shows the busiest moment of the story; it stops once the count has fallen back by
``--past-peak`` alerts (the peak has passed) or the demo ends, then stops the demo with Ctrl-C (SIGINT)
as a user would.
"""

from __future__ import annotations

import argparse
import collections
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(REPO))

from tests.browser.chromium import VIEWPORT, launch_chromium  # noqa: E402
from tests.support.checkout import checkout_env  # noqa: E402
from tests.support.mqtt import stop_process  # noqa: E402

log = logging.getLogger("screenshot")

DASHBOARD_LINE = re.compile(r"dashboard: (http://\S+/#token=\S+)")
START_TIMEOUT_S = 180.0
"""The first demo run builds the Bund grid (about 15 s); this leaves room for a slow machine."""
READY_TIMEOUT_S = 90.0
"""Longest wait for the page to be ready [s]: it took more than 30 s once in a full test run (the demo at 60x on
2 cores)."""


@dataclass
class Shot:
    """What the screenshot shows: active alerts and located units at the moment it was taken."""

    path: Path
    alerts: int
    units: int
    twin_time: str


class Demo:
    """``twin demo --http 0`` in a child process, its output kept (the last lines, for errors)."""

    def __init__(self, speed: float, duration: float, grid: Path | None) -> None:
        # this checkout's code (python -m twin.cli with the repository on PYTHONPATH), not an installed `twin`
        cmd = [sys.executable, "-m", "twin.cli", "demo", "--http", "0", "--speed", f"{speed:g}",
               "--duration", f"{duration:g}"]
        cmd += ["--grid", str(grid)] if grid else []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env=checkout_env(PYTHONUNBUFFERED="1"))
        self.lines: collections.deque[str] = collections.deque(maxlen=40)
        self.url: str | None = None
        self._found = threading.Event()
        self._reader = threading.Thread(target=self._read, name="demo-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # drained to the end, so the demo never blocks on a full pipe
            self.lines.append(line.rstrip())
            match = DASHBOARD_LINE.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self._found.set()
        self._found.set()

    def dashboard_url(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """The printed dashboard URL (with its token); `RuntimeError` if the demo ends or says nothing."""
        self._found.wait(timeout_s)
        if self.url is None:
            tail = "\n".join(self.lines)
            raise RuntimeError(f"twin demo printed no 'dashboard: http://...' line (is --http supported?):\n{tail}")
        return self.url

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 60.0) -> int:
        """Ctrl-C (the demo stops cleanly and prints its summary); killed if it does not end in time."""
        stop_process(self.proc, signal.SIGINT, timeout_s)
        self._reader.join(5)
        return self.proc.returncode


def watch_and_shoot(page, out: Path, demo: Demo, min_alerts: int, past_peak: int, deadline: float,
                    enough: int | None = None) -> Shot | None:
    """Screenshot the page at its busiest moment (see the module docstring), or as soon as it shows
    ``enough`` alerts; None if it never had ``min_alerts`` active alerts."""
    best: Shot | None = None
    while demo.running and time.monotonic() < deadline and not (enough and best and best.alerts >= enough):
        counts = page.evaluate("window.citytwin.counts()")
        if counts["alerts"] >= min_alerts and (best is None or counts["alerts"] > best.alerts):
            page.wait_for_timeout(800)  # deliberate: let the tick's risk layer and markers settle for the picture
            page.screenshot(path=out)
            clock = page.locator("#st-clock .v").inner_text()
            best = Shot(out, counts["alerts"], counts["units"], clock)
            log.info("screenshot with %d alerts and %d units at %s", best.alerts, best.units, clock)
        elif best is not None and counts["alerts"] <= best.alerts - past_peak:
            break
        page.wait_for_timeout(500)  # polling pace of the alert count (bounded by `deadline`)
    return best


def take_demo_screenshot(out: Path, speed: float = 30.0, duration: float = 240.0, grid: Path | None = None,
                         min_alerts: int = 3, past_peak: int = 2, browser=None, enough: int | None = None) -> Shot:
    """Run a demo, screenshot its dashboard at the busiest moment into ``out`` (PNG); the `Shot`.

    ``browser``: a Playwright browser to use (one is launched when None); ``enough``: stop at the first
    screenshot with this many alerts. Raises `RuntimeError` when the demo does not serve a dashboard
    or never has ``min_alerts`` alerts.
    """
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            own = launch_chromium(p)
            try:
                return take_demo_screenshot(out, speed, duration, grid, min_alerts, past_peak, own, enough)
            finally:
                own.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    demo = Demo(speed, duration, grid)
    try:
        url = demo.dashboard_url()
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.goto(url)
            t0 = time.monotonic()
            # the page is ready once its map labels and management tree are in and its WebSocket is live; a twin
            # running 60 times faster than real time keeps both cores busy, so the bound is generous
            page.wait_for_selector("body[data-ready=true][data-ws=live]", timeout=READY_TIMEOUT_S * 1000)
            log.info("dashboard ready in %.1f s", time.monotonic() - t0)
            shot = watch_and_shoot(page, out, demo, min_alerts, past_peak, time.monotonic() + duration, enough)
        finally:
            context.close()
    finally:
        code = demo.stop()
    if shot is None:
        tail = "\n".join(demo.lines)
        raise RuntimeError(f"the dashboard never showed {min_alerts} active alerts (demo exit {code}):\n{tail}")
    return shot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png", help="PNG to write")
    parser.add_argument("--speed", type=float, default=30.0, help="demo speed (simulated s per wall s)")
    parser.add_argument("--duration", type=float, default=240.0, help="longest wall time of the demo [s]")
    parser.add_argument("--grid", type=Path, help="grid NetCDF for the demo (default: the demo's own)")
    parser.add_argument("--min-alerts", type=int, default=3, help="fewest active alerts worth a screenshot")
    parser.add_argument("--past-peak", type=int, default=2, help="stop once this many fewer alerts than the peak")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        shot = take_demo_screenshot(args.out, args.speed, args.duration, args.grid, args.min_alerts, args.past_peak)
    except RuntimeError as exc:
        print(f"screenshot: {exc}", file=sys.stderr)
        return 1
    print(f"{shot.path}: {shot.alerts} active alerts, {shot.units} units, twin time {shot.twin_time}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
