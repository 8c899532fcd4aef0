"""A small process supervisor for the one-machine city deployment (`twin run --city`, docs/city-deployment.md).

It starts every part of the deployment (ingest workers, district twins, the city tier) as a child process, prefixes
their output with their name, restarts a child that dies (after 1, 2, 4 … up to `MAX_BACKOFF_S` seconds, counted),
and stops them all together: SIGTERM, then SIGKILL for a child still running after `STOP_GRACE_S`. Each part is an
ordinary `twin` command, so the same parts run on several machines without it (docs/city-deployment.md section 8).

On Linux a child also gets SIGTERM when the supervisor dies without stopping it (SIGKILL, an out-of-memory kill): it
is started through a small launcher that sets ``PR_SET_PDEATHSIG`` and then executes the command (`orphan_guarded`).
Without it the children, each in a session of its own, would run on, and a restarted supervisor would start a
second set of parts on the same state folders, MQTT client ids and city clock. The signal follows the thread that
started the child, so start and restart children from one long-lived thread (`twin run --city` uses its main thread).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
"""Longest wait before restarting a child that died [s]."""
STOP_GRACE_S = 10.0
"""How long a child has to stop after SIGTERM before it is killed [s]."""
HEALTHY_S = 60.0
"""A child that ran this long before dying restarts after the shortest wait again [s]."""


@dataclass
class Child:
    """One supervised part: its name, command line and environment additions."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 1.0
    next_start: float = 0.0
    reader: threading.Thread | None = None


class Supervisor:
    """Start, watch, restart and stop child processes (see the module docstring).

    ``say`` receives every line a child prints, prefixed with its name, and the supervisor's own notices.
    """

    def __init__(self, children: list[Child], say: Callable[[str], None] = print, poll_s: float = 0.2,
                 grace_s: float = STOP_GRACE_S) -> None:
        names = [c.name for c in children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be distinct: {names}")
        self.children = children
        self.say = say
        self.poll_s = poll_s
        self.grace_s = grace_s
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Start every child now."""
        for child in self.children:
            self._spawn(child)

    def add(self, children: list[Child]) -> None:
        """Supervise more children, started now (names distinct from those already supervised)."""
        names = {c.name for c in self.children}
        clash = [c.name for c in children if c.name in names]
        if clash:
            raise ValueError(f"child names must be distinct: {clash} are already supervised")
        with self._lock:
            if self._stop.is_set():
                return
            self.children.extend(children)
            for child in children:
                self._spawn(child)

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Watch the children until `stop` is called or ``until()`` is true; restart those that die."""
        while not self._stop.is_set() and not until():
            self.check()
            self._stop.wait(self.poll_s)

    def check(self) -> None:
        """One round: restart children that died once their wait is over."""
        now = time.monotonic()
        for child in self.children:
            with self._lock:
                if self._stop.is_set():
                    return
                proc = child.proc
                if proc is not None and proc.poll() is not None:
                    self._died(child, proc.returncode, now)
                elif proc is None and now >= child.next_start:
                    child.restarts += 1
                    self._spawn(child)

    def stop(self) -> dict[str, int | None]:
        """Stop every child (SIGTERM, SIGKILL after ``grace_s``); their exit statuses by name."""
        self._stop.set()
        with self._lock:
            for child in self.children:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            codes = {}
            for child in self.children:
                codes[child.name] = self._reap(child, deadline)
            return codes

    def status(self) -> list[dict]:
        """Per child: name, pid, running, restarts."""
        return [{"name": c.name, "pid": c.proc.pid if c.proc else None,
                 "running": c.proc is not None and c.proc.poll() is None, "restarts": c.restarts}
                for c in self.children]

    # ------------------------------------------------------------ inside
    def _spawn(self, child: Child) -> None:
        env = os.environ | {"PYTHONUNBUFFERED": "1"} | child.env
        child.proc = subprocess.Popen(orphan_guarded(child.argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=env, start_new_session=True)
        child.started_at = time.monotonic()
        child.reader = threading.Thread(target=self._relay, args=(child, child.proc), daemon=True,
                                        name=f"relay-{child.name}")
        child.reader.start()

    def _relay(self, child: Child, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.say(f"[{child.name}] {line.rstrip()}")

    def _died(self, child: Child, code: int, now: float) -> None:
        if now - child.started_at >= HEALTHY_S:
            child.backoff_s = 1.0
        self.say(f"[supervisor] {child.name} ended with status {code}; restarting in {child.backoff_s:.0f} s")
        child.proc = None
        child.next_start = now + child.backoff_s
        child.backoff_s = min(child.backoff_s * 2, MAX_BACKOFF_S)

    def _reap(self, child: Child, deadline: float) -> int | None:
        proc = child.proc
        if proc is None:
            return None
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.say(f"[supervisor] {child.name} did not stop within {self.grace_s:g} s: killed")
            proc.kill()
            proc.wait(10)
        if child.reader is not None:
            child.reader.join(2)
        return proc.returncode


_GUARD = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
if os.getppid() != int(sys.argv[1]):
    sys.exit(70)  # the supervisor died before the signal was set: do not start an orphan
os.execvp(sys.argv[2], sys.argv[2:])
"""


def orphan_guarded(argv: list[str]) -> list[str]:
    """``argv`` started through a launcher that makes the child get SIGTERM when this process dies (Linux; the
    command unchanged elsewhere). The launcher replaces itself with the command (``execvp``): the child's process id
    and command line are the command's."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-c", _GUARD, str(os.getpid()), *argv]


def twin_command(*args: str) -> list[str]:
    """The command line of a ``twin`` subcommand run with this interpreter."""
    return [sys.executable, "-m", "twin.cli", *args]
