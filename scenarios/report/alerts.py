"""The alert timeline read by place: one row per hazard and place with counts, and the open alerts by level.

The full per-event list stays in ``alerts.csv`` (`scenarios.report.outputs.timeline_rows`); the report shows it
collapsed (`collapse_alerts`) and as open alerts over time (`open_alerts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from scenarios.metrics import COLOURS

KINDS = ("raised", "updated", "cancelled", "acknowledged")
LEVELS = COLOURS[1:]
"""Alert levels in order: blue, yellow, orange, red."""
_CLOCK = re.compile(r"T(\d\d:\d\d)")
_SUFFIX = re.compile(r"\.(update|cancel|ack)\d+$")


def clock_of(row: dict) -> str:
    """The local clock time ``HH:MM`` of a timeline row (its CAP ``sent``, written in the scenario's zone), else
    minutes from the start."""
    m = _CLOCK.search(str(row.get("sent", "")))
    return m.group(1) if m else f"+{float(row.get('offset_min', 0.0)):.0f} min"


def alert_id(row: dict) -> str:
    """The alert a timeline row is about: ``alert``, else its message identifier without the ``.update3``,
    ``.cancel4`` or ``.ack1`` suffix (`twin.alerting.compose`)."""
    return str(row.get("alert") or _SUFFIX.sub("", str(row.get("identifier", ""))))


def level_index(level: object) -> int:
    """0 (none) to 4 (red) of a level name; unknown names are 0."""
    return COLOURS.index(str(level)) if str(level) in COLOURS else 0


@dataclass
class AlertPlace:
    """The alerts of one hazard at one place (the CAP ``areaDesc``)."""

    hazard: str
    area: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    alerts: set[str] = field(default_factory=set)
    top: int = 0
    first_min: float = float("inf")
    last_min: float = float("-inf")
    first_at: str = ""
    last_at: str = ""

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    @property
    def level(self) -> str:
        return COLOURS[self.top]

    def add(self, row: dict) -> None:
        kind = str(row.get("kind", ""))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.alerts.add(alert_id(row))
        if kind != "cancelled":
            self.top = max(self.top, level_index(row.get("level")))
        t = float(row.get("offset_min", 0.0))
        if t < self.first_min:
            self.first_min, self.first_at = t, clock_of(row)
        if t >= self.last_min:
            self.last_min, self.last_at = t, clock_of(row)


def collapse_alerts(rows: list[dict]) -> list[AlertPlace]:
    """One `AlertPlace` per (hazard, place) of the timeline ``rows``, worst first: highest level, then most
    events, then earliest."""
    groups: dict[tuple[str, str], AlertPlace] = {}
    for row in rows:
        key = (str(row.get("hazard", "")), str(row.get("area", "")) or "(no area)")
        groups.setdefault(key, AlertPlace(*key)).add(row)
    return sorted(groups.values(), key=lambda g: (-g.top, -g.events, g.first_min, g.hazard, g.area))


@dataclass
class OpenAlerts:
    """Open alerts over time: ``times_min`` [min from the start] and, per hazard, an (n_times, 4) array of the
    number of open alerts at each level (blue, yellow, orange, red) from that time on."""

    times_min: np.ndarray
    counts: dict[str, np.ndarray]


def open_alerts(rows: list[dict], end_min: float | None = None) -> OpenAlerts:
    """Open alerts by hazard and level after each event of ``rows`` (time-ordered timeline rows): an alert is open
    from its raise to its cancel, at the level of its last message; ``end_min`` closes the series."""
    active: dict[str, tuple[str, int]] = {}
    hazards = list(dict.fromkeys(str(r.get("hazard", "")) for r in rows))
    times: list[float] = [0.0]
    snaps: list[dict[str, np.ndarray]] = [{h: np.zeros(4, int) for h in hazards}]
    for row in rows:
        ident, hazard = alert_id(row), str(row.get("hazard", ""))
        if row.get("kind") == "cancelled":
            active.pop(ident, None)
        elif row.get("kind") in ("raised", "updated"):
            active[ident] = (hazard, max(1, level_index(row.get("level"))))
        snap = {h: np.zeros(4, int) for h in hazards}
        for h, level in active.values():
            snap[h][level - 1] += 1
        t = float(row.get("offset_min", 0.0))
        if times and times[-1] == t:
            snaps[-1] = snap
        else:
            times.append(t)
            snaps.append(snap)
    if end_min is not None and end_min > times[-1]:
        times.append(end_min)
        snaps.append(snaps[-1])
    return OpenAlerts(np.asarray(times), {h: np.stack([s[h] for s in snaps]) for h in hazards})
