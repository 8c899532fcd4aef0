"""The demo's terminal: a live status line, the story's beats, alert and case events as they happen, a summary.

On a terminal the status line is redrawn in place under the events; into a pipe or a file every
event is a line and the status is printed every ``plain_every_s`` wall seconds.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TextIO

from scenarios.demo.story import Story
from scenarios.demo.watch import Tally
from scenarios.feeds.simulator import Simulator

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def clock_text(t: float) -> str:
    """Twin time as Shanghai local time, ``HH:MM:SS``."""
    return dt.datetime.fromtimestamp(t, SHANGHAI).strftime("%H:%M:%S")


class Console:
    """Writes the demo's live view to ``out``."""

    def __init__(self, out: TextIO, *, speed: float, plain_every_s: float = 10.0) -> None:
        self.out, self.speed = out, speed
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.plain_every_s = plain_every_s
        self.shown = 0  # lines of the tally's log shown (`Tally.logged`)
        self.last_plain = 0.0
        self.rate = _Rate()
        self.line_open = False

    def _print(self, text: str) -> None:
        if self.line_open:
            self.out.write("\r\x1b[2K")
            self.line_open = False
        self.out.write(text + "\n")
        self.out.flush()

    def say(self, text: str) -> None:
        """A plain message."""
        self._print(text)

    def beat(self, t: float, text: str) -> None:
        """A beat of the story (from the feed thread, as it happens)."""
        self._print(f"{clock_text(t)}  ** {text}")

    def show(self, tally: Tally, now: float) -> None:
        """New events, then the status line."""
        new = min(tally.logged - self.shown, len(tally.events))
        for t, text in list(tally.events)[len(tally.events) - new:] if new > 0 else []:
            self._print(f"{clock_text(t)}  {text}")
        self.shown = tally.logged
        line = self.status_line(tally, now)
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
            self.out.flush()
            self.line_open = True
        elif time.monotonic() - self.last_plain >= self.plain_every_s:
            self.last_plain = time.monotonic()
            self._print(line)

    def status_line(self, tally: Tally, now: float) -> str:
        """Twin time, messages per wall second, rejected, active alerts by hazard, units, cases."""
        s = tally.status
        received = int(s.get("received", 0))
        rejected = sum(int(v) for v in (s.get("rejected") or {}).values())
        by_hazard: dict[str, int] = {}
        for hazard in tally.active.values():
            by_hazard[hazard] = by_hazard.get(hazard, 0) + 1
        active = ", ".join(f"{h} {n}" for h, n in sorted(by_hazard.items())) or "none"
        return (f"[{clock_text(now)}] {self.rate.update(received):6.0f} msg/s | received {received} | "
                f"rejected {rejected} | active alerts: {active} | units sent {len(tally.delivered)}, "
                f"acked {len(tally.acked)}, on scene {len(tally.arrivals)} | cases open {len(tally.open_cases())}, "
                f"closed {tally.case_counts()['closed']} | tick {s.get('tick_ms', 0)} ms, "
                f"lag {s.get('lag_ms', 0)} ms")

    def done(self) -> None:
        """End the status line."""
        if self.line_open:
            self.out.write("\n")
            self.out.flush()
            self.line_open = False


class _Rate:
    """Messages per wall second from a growing counter, over the last few seconds."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self.points: list[tuple[float, int]] = []

    def update(self, count: int) -> float:
        now = time.monotonic()
        self.points = [p for p in self.points if now - p[0] <= self.window_s] + [(now, count)]
        (t0, c0), (t1, c1) = self.points[0], self.points[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def summary(tally: Tally, metrics: dict, sim: Simulator, story: Story, clock, wall_s: float) -> str:
    """The closing summary: messages, rejections by reason, alerts by hazard, units and arrivals, cases, reports and
    escalations; its last line is the ledger (`Tally.ledger_line`)."""
    rejected = {k: v for k, v in (metrics.get("rejected") or {}).items() if v}
    lines = [
        "== twin demo summary ==",
        f"time: {clock_text(story.start)} to {clock_text(min(clock(), sim.t + 1))} simulated "
        f"({(sim.t - story.start) / 60:.1f} min) in {wall_s:.0f} s wall at {clock.speed:g}x",
        f"messages: {sim.sent} published by the feeds, {metrics.get('received', 0)} received by the twin, "
        f"{metrics.get('accepted', 0)} accepted, {metrics.get('duplicates', 0)} duplicates",
        f"rejected: {sum(rejected.values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(rejected.items())) or 'none'}); "
        f"dead letters seen on the broker: {sum(tally.deadletters.values())}",
    ]
    for hazard in tally.hazards():
        c = tally.counts(hazard)
        lines.append(f"alerts {hazard}: raised {c['raised']}, updated {c['updated']}, cancelled {c['cancelled']}")
    if not tally.alerts:
        lines.append("alerts: none")
    lines.append(f"alerts still active: {len(tally.active)}")
    arrival = tally.arrival_minutes()
    arrival_text = (f"time to arrival median {arrival[0]:.1f} min, max {arrival[1]:.1f} min" if arrival
                    else "no arrival yet")
    by_hazard = ", ".join(f"{h} {n}" for h, n in tally.acked_by_hazard().items()) or "none"
    lines.append(f"field units: {len(tally.delivered)} dispatched (unit, alert), {len(tally.acked)} acknowledged "
                 f"({by_hazard}), {len(tally.arrivals)} on scene; {arrival_text}")
    return "\n".join(lines + case_summary(tally))


def case_summary(tally: Tally) -> list[str]:
    """The summary's lines on cases: by category, the citizens' reports and their cases, escalations, the ledger."""
    by_category: dict[str, list[int]] = {}
    for c in tally.cases.values():
        counts = by_category.setdefault(str(c.get("category", "?")), [0, 0])
        counts[0] += 1
        counts[1] += c["status"] == "closed"
    lines = [f"cases {category}: opened {n}, closed {closed}" for category, (n, closed) in sorted(by_category.items())]
    for report, case in sorted(tally.reports().items()):
        lines.append(f"report {report}: case {case['id']} ({case.get('category', '?')}, "
                     f"{(case.get('place') or {}).get('name_en', '?')}), {case['status']}, unit "
                     f"{case.get('assignee') or 'none'}")
    steps = ", ".join(f"{k} {v}" for k, v in sorted(tally.escalations.items())) or "none"
    lines.append(f"escalations to the supervisor: {sum(tally.escalations.values())} ({steps})")
    if tally.open_cases():
        lines.append(f"cases still open: {', '.join(tally.open_cases())}")
    lines.append(tally.ledger_line())
    return lines
