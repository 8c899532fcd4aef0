"""The values of active alerts: current value, peak and its time, trend and a 30-minute history (issue 16).

The core calls `AlertValues.observe` every tick with the worst value of each active alert's hazard metric over the
alert's cells (`models.hazards`: the largest crowd density, water depth or 1-hour rain, the smallest traffic
speed) and the devices that reported it. From these it keeps, per alert:

- the current value (NaN or None: no data this tick, the last value is kept);
- the peak, the hazard's worst of every value observed since the alert was raised, and when it was first reached;
- the trend, the least-squares slope of the values of the last ``trend_s`` seconds [unit per minute], "rising",
  "falling" or "steady" (within a per-hazard dead band, `TrendBands`), drawn "↑", "↓", "→";
- a history sampled every ``sample_s`` seconds over ``history_s`` (bounded), for the dashboard's sparkline;
- the value of the alert's last published message, so that `due` says when the value has moved by a configured
  step (`ValueSteps`) and a CAP Update should go out.

`parameters` gives the CAP parameters of a message (``value``, ``peakValue``, ``peakAt``, ``trend``,
``devices``; docs/contract/cap.md), `snapshot` the dashboard's view. Everything is plain numbers and strings, so
`save_state` / `restore_state` survive a snapshot of the live twin. Times are unix seconds of twin time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from models.hazards import hazard as hazard_spec
from twin.alerting.cap import cap_time

ARROWS = {"rising": "↑", "falling": "↓", "steady": "→"}
"""The dashboard's arrow of each trend word."""
MAX_RECENT = 10_000
"""Bound on the observations kept for the trend, whatever the tick (a 1 s tick over 300 s keeps 300)."""
MAX_DEVICES_LISTED = 12
"""Device ids named in the ``devices`` CAP parameter; more are counted (``and 7 more``)."""


@dataclass(frozen=True)
class ValueSteps:
    """How far an alert's value must move from the value of its last published message before a CAP Update goes
    out (`AlertValues.due`), per hazard, in the hazard's unit (`models.hazards`). All [design]: about a tenth of
    the span between two warning levels, so an operator hears of a real change and not of every wobble.

    Attributes
    ----------
    crowd, crowd_forecast : float
        Crowd density (observed, projected). [person/m2] [design]
    flood : float
        Water depth. [m] [design]
    traffic : float
        Traffic speed. [km/h] [design]
    rain : float
        Rolling 1-hour rain total. [mm] [design]
    river : float
        River level at the reference gauge. [m] [design: the river's colours are 0.2-0.3 m apart]
    """

    crowd: float = 0.5
    crowd_forecast: float = 0.5
    flood: float = 0.05
    traffic: float = 5.0
    rain: float = 5.0
    river: float = 0.05

    def __post_init__(self) -> None:
        for name in ("crowd", "crowd_forecast", "flood", "traffic", "rain", "river"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"ValueSteps.{name} must be a positive number, got {value!r}")

    def step(self, hazard: str) -> float:
        """The step of ``hazard`` in its unit; ValueError for a hazard without one."""
        value = getattr(self, hazard, None)
        if not isinstance(value, int | float):
            raise ValueError(f"no value step for hazard {hazard!r}; known: crowd, crowd_forecast, flood, traffic, "
                             "rain, river")
        return float(value)


@dataclass(frozen=True)
class TrendBands:
    """Dead bands of the trend: a slope smaller than this is "steady" [hazard unit per minute]. [design]: a
    change of about half a `ValueSteps` step over the 5-minute trend window."""

    crowd: float = 0.05
    crowd_forecast: float = 0.05
    flood: float = 0.005
    traffic: float = 0.5
    rain: float = 0.5
    river: float = 0.005

    def band(self, hazard: str) -> float:
        """The dead band of ``hazard`` [unit/min]; 0 for a hazard without one."""
        return float(getattr(self, hazard, 0.0))


@dataclass
class _Track:
    """What is known of one alert's value (plain numbers; see `AlertValues`)."""

    hazard: str
    value: float | None = None
    value_t: float | None = None
    peak: float | None = None
    peak_t: float | None = None
    devices: tuple[str, ...] = ()
    published: float | None = None
    was_published: bool = False
    last_sample_t: float | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=MAX_RECENT))
    history: deque = field(default_factory=deque)


def _finite(value: float | None) -> float | None:
    """``value`` as a float, None when it is None, NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through ``(t [s], value)`` points [value unit per second]; None with fewer
    than two distinct times."""
    if len(points) < 2:
        return None
    n = len(points)
    t_mean = sum(t for t, _ in points) / n
    v_mean = sum(v for _, v in points) / n
    sxx = sum((t - t_mean) ** 2 for t, _ in points)
    if sxx <= 0:
        return None
    return sum((t - t_mean) * (v - v_mean) for t, v in points) / sxx


class AlertValues:
    """Value, peak, trend and history of every active alert (see the module docstring).

    Parameters
    ----------
    history_s : float
        How far back the history goes. [s] (1800: the dashboard's 30-minute sparkline)
    sample_s : float
        One history sample per this much twin time. [s]
    trend_s : float
        The trend is the slope over the observations of this last window. [s]
    bands : TrendBands
        Per-hazard dead bands of "steady".
    """

    def __init__(self, history_s: float = 1800.0, sample_s: float = 60.0, trend_s: float = 300.0,
                 bands: TrendBands | None = None) -> None:
        for name, value in (("history_s", history_s), ("sample_s", sample_s), ("trend_s", trend_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"AlertValues: {name} must be a positive number of seconds, got {value!r}")
        if sample_s > history_s:
            raise ValueError(f"AlertValues: sample_s ({sample_s:g} s) is longer than history_s ({history_s:g} s)")
        self.history_s, self.sample_s, self.trend_s = float(history_s), float(sample_s), float(trend_s)
        self.bands = bands or TrendBands()
        self.max_samples = int(history_s // sample_s) + 1
        """Bound on the history's length: one sample per ``sample_s`` over ``history_s``, both ends included."""
        self._tracks: dict[str, _Track] = {}

    # ------------------------------------------------------------ feeding
    def observe(self, t: float, identifier: str, hazard: str, value: float | None,
                devices: tuple[str, ...] | list[str] = ()) -> None:
        """One tick's value of an alert at twin time ``t`` [unix s]: the worst of its hazard's metric over its cells
        in the hazard's unit, NaN or None if no device reported (the last value is kept), and the devices that
        reported it. KeyError for an unknown hazard."""
        spec = hazard_spec(hazard)
        track = self._tracks.setdefault(identifier, _Track(hazard))
        track.devices = tuple(sorted(set(devices)))
        value = _finite(value)
        if value is None:
            self._prune(track, float(t))
            return
        track.value, track.value_t = value, float(t)
        if track.peak is None or spec.worst_of([value, track.peak]) != track.peak:
            track.peak, track.peak_t = value, float(t)
        track.recent.append((float(t), value))
        if track.last_sample_t is None or t >= track.last_sample_t + self.sample_s:
            track.history.append((float(t), value))
            track.last_sample_t = float(t)
        self._prune(track, float(t))

    def _prune(self, track: _Track, t: float) -> None:
        """Drop observations older than the trend window and samples older than the history."""
        while track.recent and track.recent[0][0] < t - self.trend_s:
            track.recent.popleft()
        while track.history and (track.history[0][0] < t - self.history_s or len(track.history) > self.max_samples):
            track.history.popleft()

    def forget(self, identifier: str) -> None:
        """Stop tracking an alert (it was cancelled); unknown identifiers are ignored."""
        self._tracks.pop(identifier, None)

    def identifiers(self) -> list[str]:
        """The alerts tracked, in the order first observed."""
        return list(self._tracks)

    def __contains__(self, identifier: object) -> bool:
        return identifier in self._tracks

    # ------------------------------------------------------------ updates
    def due(self, identifier: str, step: float) -> bool:
        """True when the current value has moved by ``step`` or more (hazard unit; `ValueSteps.step`) from the value
        of the alert's last published message, or a value has come in since a message published without one.
        False for an alert never marked published (its first message is its Alert) or with no value."""
        track = self._tracks.get(identifier)
        if track is None or not track.was_published or track.value is None:
            return False
        if track.published is None:
            return True
        return abs(track.value - track.published) >= step - 1e-12 * max(1.0, abs(step))

    def mark_published(self, identifier: str) -> None:
        """A message of the alert carrying its current value has gone out; `due` now measures from it."""
        track = self._tracks.get(identifier)
        if track is None:
            return
        track.published, track.was_published = track.value, True

    # ------------------------------------------------------------ reading
    def current(self, identifier: str) -> float | None:
        """The alert's last value (hazard unit), None if it never had one or is not tracked."""
        track = self._tracks.get(identifier)
        return track.value if track else None

    def trend(self, identifier: str) -> tuple[str, float | None]:
        """(``rising`` / ``falling`` / ``steady``, slope [unit per minute] or None with fewer than two values in the
        trend window)."""
        track = self._tracks.get(identifier)
        if track is None:
            return "steady", None
        newest = track.recent[-1][0] if track.recent else 0.0
        points = [(t, v) for t, v in track.recent if t >= newest - self.trend_s]
        slope_s = least_squares_slope(points)
        if slope_s is None:
            return "steady", None
        per_min = slope_s * 60.0
        band = self.bands.band(track.hazard)
        word = "steady" if abs(per_min) <= band else "rising" if per_min > 0 else "falling"
        return word, per_min

    def parameters(self, identifier: str) -> dict[str, str]:
        """CAP parameters of the alert's value (docs/contract/cap.md): ``value`` ``4.60 person/m2``, ``peakValue``,
        ``peakAt`` (CAP time), ``trend`` ``rising, +0.12 person/m2 per minute``, ``devices`` (ids, the first
        `MAX_DEVICES_LISTED`); empty for an alert with no value yet."""
        track = self._tracks.get(identifier)
        if track is None or track.value is None:
            return {}
        unit = hazard_spec(track.hazard).unit
        word, slope = self.trend(identifier)
        out = {"value": f"{track.value:.2f} {unit}", "peakValue": f"{track.peak:.2f} {unit}",
               "peakAt": cap_time(track.peak_t),
               "trend": word if slope is None else f"{word}, {slope:+.2f} {unit} per minute"}
        if track.devices:
            shown = ", ".join(track.devices[:MAX_DEVICES_LISTED])
            more = len(track.devices) - MAX_DEVICES_LISTED
            out["devices"] = f"{shown} and {more} more" if more > 0 else shown
        return out

    def snapshot(self, identifier: str) -> dict | None:
        """The dashboard's view of the alert, None if it is not tracked: ``value``, ``unit``, ``peak``, ``peak_at``
        [unix s], ``trend`` (slope [unit/min] or None), ``trend_word``, ``trend_arrow``, ``history``
        ([[t, value], ...], oldest first) and ``devices`` (ids)."""
        track = self._tracks.get(identifier)
        if track is None:
            return None
        word, slope = self.trend(identifier)
        return {"value": track.value, "unit": hazard_spec(track.hazard).unit, "peak": track.peak,
                "peak_at": track.peak_t, "trend": None if slope is None else round(slope, 6), "trend_word": word,
                "trend_arrow": ARROWS[word], "history": [[t, v] for t, v in track.history],
                "devices": list(track.devices)}

    # ------------------------------------------------------------ snapshots (twin.live.snapshot)
    def save_state(self) -> dict:
        """Every tracked alert as plain numbers, strings and lists."""
        return {"alerts": [{"identifier": ident, "hazard": tr.hazard, "value": tr.value, "value_t": tr.value_t,
                            "peak": tr.peak, "peak_t": tr.peak_t, "devices": list(tr.devices),
                            "published": tr.published, "was_published": tr.was_published,
                            "last_sample_t": tr.last_sample_t, "recent": [list(p) for p in tr.recent],
                            "history": [list(p) for p in tr.history]}
                           for ident, tr in self._tracks.items()]}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (replacing what is tracked)."""
        self._tracks = {}
        for s in state.get("alerts", []):
            track = _Track(str(s["hazard"]), _finite(s["value"]), _finite(s["value_t"]), _finite(s["peak"]),
                           _finite(s["peak_t"]), tuple(s["devices"]), _finite(s["published"]),
                           bool(s["was_published"]), _finite(s["last_sample_t"]))
            track.recent.extend((float(t), float(v)) for t, v in s["recent"])
            track.history.extend((float(t), float(v)) for t, v in s["history"][-self.max_samples:])
            self._tracks[str(s["identifier"])] = track
