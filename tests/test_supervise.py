"""The supervisor of `twin run --city` (twin/cli/supervise.py): children started, relayed, restarted, stopped."""

from __future__ import annotations

import signal
import sys
import threading

import pytest

from tests.support.waits import wait_until
from twin.cli.supervise import Child, Supervisor


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)

    def having(self, text: str) -> list[str]:
        with self.lock:
            return [line for line in self.lines if text in line]


def test_children_are_relayed_restarted_when_they_die_and_stopped_together():
    said = Lines()
    steady = Child("steady", _py("import time\nprint('up', flush=True)\nwhile True: time.sleep(0.05)"))
    brief = Child("brief", _py("print('once', flush=True)"))
    sup = Supervisor([steady, brief], say=said, poll_s=0.05)
    sup.start()
    runner = threading.Thread(target=sup.run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: said.having("[steady] up"), 10, "the steady child's output, prefixed")
        wait_until(lambda: brief.restarts >= 2, 15, "the brief child restarted twice (after 1 s, then 2 s)")
        assert len(said.having("[brief] once")) >= 2
        assert said.having("[supervisor] brief ended with status 0; restarting in 1 s")
        assert said.having("[supervisor] brief ended with status 0; restarting in 2 s"), "the wait doubles"
        assert steady.restarts == 0
    finally:
        codes = sup.stop()
        runner.join(5)
    assert codes["steady"] == -signal.SIGTERM
    assert all(not s["running"] for s in sup.status())


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace():
    said = Lines()
    stubborn = Child("stubborn", _py("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                     "print('ready', flush=True)\nwhile True: time.sleep(0.05)"))
    sup = Supervisor([stubborn], say=said, poll_s=0.05, grace_s=0.5)
    sup.start()
    wait_until(lambda: said.having("[stubborn] ready"), 10, "the child ignores SIGTERM from now on")
    codes = sup.stop()
    assert codes["stubborn"] == -signal.SIGKILL
    assert said.having("[supervisor] stubborn did not stop within 0.5 s: killed")


def test_names_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        Supervisor([Child("a", ["true"]), Child("a", ["true"])])
