"""``twin demo`` as a user starts it, and its first run after installing interrupted with Ctrl-C, in the background.

``demo_command(*args)`` and ``demo_env(folder)`` give the command line (at `SPEED` times real time) and the
environment (this checkout's code, an empty grid cache of the test's own, unbuffered output) of a test's demo.

`InterruptedDemo` is the run `tests/live/test_demo_e2e.py::test_ctrl_c_stops_the_demo_cleanly_with_a_summary`
judges: an empty ``NUMBA_CACHE_DIR``, so the models' kernels compile (40-60 s of one core) before the story's clock
starts; once the story's first crowd alert is printed it asks the dashboard's API for the alerts and sends SIGINT,
and keeps everything the demo printed. It runs on a thread of its own and touches nothing the other tests use, so
tests/conftest.py starts it at the start of a session that runs that test: the compile then takes the core the
test process leaves idle, instead of a minute of the suite's wall time, and the test reads the outcome
(`InterruptedDemo.outcome`).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.checkout import checkout_env

SPEED = "60"
"""The demo's clock speed in the tests (times real time): the story's 56 minutes in about a minute."""
CROWD_RAISED = re.compile(r"raised\s+crowd\s")
"""A printed event line of a raised observed crowd alert."""
RUN_LIMIT_S = 600.0
"""The background run is killed after this long [s of wall time] whatever it is doing (nothing is left behind)."""


def demo_command(*args: str) -> list[str]:
    """``twin demo --speed SPEED *args`` in this interpreter."""
    return [sys.executable, "-m", "twin.cli", "demo", "--speed", SPEED, *args]


def demo_env(folder: Path) -> dict[str, str]:
    """This checkout's code, an empty grid cache under ``folder``, unbuffered output."""
    return checkout_env(XDG_CACHE_HOME=str(folder / "cache"), PYTHONUNBUFFERED="1")


@dataclass
class DemoOutcome:
    """What an interrupted demo printed and answered."""

    lines: list[str] = field(default_factory=list)
    """Standard output up to and including the first raised crowd alert's line (or all of it, without one)."""
    raised_line: str | None = None
    """The first raised crowd alert's line; None if the demo ended without one."""
    hazards: set[str] | None = None
    """The hazards of the alerts ``GET /api/alerts`` of the dashboard served then; None if it could not be asked."""
    api_error: str = ""
    rest: str = ""
    """Standard output after the alert line, until the demo ended."""
    err: str = ""
    """Standard error."""
    returncode: int | None = None
    problem: str = ""
    """What went wrong in the runner itself (a timeout, an exception), empty when nothing did."""


class InterruptedDemo:
    """``twin demo --grid GRID --state STATE --http 0`` with an empty numba cache, stopped with Ctrl-C once its first
    crowd alert is out (see the module docstring). ``state`` is the demo's ``--state`` folder."""

    def __init__(self, grid: Path, folder: Path) -> None:
        self.state = folder / "demo-state-interrupted"
        self.cmd = demo_command("--grid", str(grid), "--state", str(self.state), "--http", "0")
        self.env = demo_env(folder) | {"NUMBA_CACHE_DIR": str(folder / "empty-numba-cache")}
        self.proc: subprocess.Popen | None = None
        self._outcome = DemoOutcome()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="interrupted-demo", daemon=True)
        self._watchdog: threading.Timer | None = None

    def start(self) -> InterruptedDemo:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=self.env)
        self._watchdog = threading.Timer(RUN_LIMIT_S, self._kill)
        self._watchdog.daemon = True
        self._watchdog.start()
        self._thread.start()
        return self

    def outcome(self, timeout_s: float) -> DemoOutcome:
        """The outcome, once the demo has ended (waits at most ``timeout_s``; raises AssertionError after that)."""
        if not self._done.wait(timeout_s):
            raise AssertionError(f"the interrupted demo had not ended after another {timeout_s:g} s; printed so far:\n"
                                 + "".join(self._outcome.lines[-40:]))
        return self._outcome

    def stop(self) -> None:
        """Kill the demo if it still runs (a session that ends early) and wait for the runner."""
        self._kill()
        if self._thread.is_alive():
            self._thread.join(30)
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def _run(self) -> None:
        out, proc = self._outcome, self.proc
        try:
            for line in proc.stdout:
                out.lines.append(line)
                if CROWD_RAISED.search(line):  # the story is under way: the observed crowd alert is out
                    out.raised_line = line
                    break
            if out.raised_line is not None:
                out.hazards = self._api_hazards("".join(out.lines))
                proc.send_signal(signal.SIGINT)
            out.rest, out.err = proc.communicate(timeout=60)
        except Exception as exc:  # reported by the test, with the output so far
            out.problem = f"{type(exc).__name__}: {exc}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            out.returncode = proc.returncode
            self._done.set()

    def _api_hazards(self, printed: str) -> set[str] | None:
        """The hazards of the dashboard API's alerts now (its address is printed), None when it cannot be asked."""
        found = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/", printed)
        if found is None:
            self._outcome.api_error = "no 'dashboard: http://127.0.0.1:PORT/' line was printed"
            return None
        try:
            with urllib.request.urlopen(f"{found[1]}/api/alerts", timeout=10) as r:
                return {f["properties"]["hazard"] for f in json.load(r)["features"]}
        except (OSError, ValueError, KeyError) as exc:
            self._outcome.api_error = f"{type(exc).__name__}: {exc}"
            return None
