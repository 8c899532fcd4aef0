"""The alert lifecycle: regions of warning cells become alerts, tracked across ticks.

`AlertBook` emits lifecycle events (raised, updated, cancelled, acknowledged) and knows nothing of
CAP: `twin.alerting.compose` turns each event into the alert's next CAP message.

Every tick, for each hazard, the cells at level blue or above form regions (`twin.alerting.regions`:
8-connected, and cells up to two cells apart join one region). A region is one alert, and it is
carried to the next tick by overlap:

- a region that overlaps no active alert raises a new alert (CAP ``Alert``);
- a region that overlaps active alerts joins the one it overlaps most (the older on a tie),
  so a growing, shrinking or moving area keeps its alert, and a split keeps both parts in
  one alert (its area then has several polygons);
- when regions merge, the alerts that lost their region are cancelled, saying into which
  alert they merged, and the survivor's ``Update`` references them;
- an alert whose level changes, whose area splits or joins up, or whose area changes by more
  than `area_change` (Jaccard distance of the cell sets since the last message) gets an
  ``Update``;
- an alert with no cells left is cancelled once it has had none for `clear_s` seconds of twin time
  (the cell-level state machine already holds levels through its own clear delay);
- an operator's acknowledgement of an active alert is an event of its own; the alert then lists
  its operators, in order, in every later message.

Cells with no data (level -1) keep their last known level: silence neither raises nor clears.

A hazard may come as *places* instead of a level grid (`twin.alerting.segments.Place`): traffic on road
segments, flood and crowd on operational units (`twin.alerting.units`: a waterlogging point, a named square, a
management grid unit). Each place is one region, carried to the next tick by the alert whose place has the same
non-empty ``key`` (an operational unit), else by the road links it shares with an active alert (two directions of
one road share cells, never links); a key match wins over shared links. The alert keeps the place for its CAP
area, ``areaDesc``, names and evidence; when it carries several places, the first one's key and names. The rules
above are otherwise the same.

`AlertBook.refresh` is an ``updated`` event for an active alert whose level and area did not change but whose value
moved (the caller decides when: `twin.alerting.values`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import numpy as np

from twin.alerting.regions import label_regions, overlap_counts, region_cells
from twin.alerting.segments import Place

log = logging.getLogger(__name__)

KEY_MATCH = 1 << 40
"""Overlap score of a place with the alert whose place has the same key: more than any number of shared links."""

@dataclass
class Alert:
    """One alert's current state."""

    identifier: str
    hazard: str
    level: int
    cells: np.ndarray
    raised_at: float
    published_cells: np.ndarray
    published_parts: int = 1
    messages: list[dict] = field(default_factory=list)
    """Its CAP messages so far, oldest first (appended by `twin.alerting.compose.issue`)."""
    empty_since: float | None = None
    """Twin time [unix s] of the first tick at which the alert had no cells, None while it has some."""
    acknowledged_by: list[str] = field(default_factory=list)
    """Operators who acknowledged the alert, in order."""
    place: Place | None = None
    """The place the alert is about (a road segment, an operational unit), None for a region of the level grid."""

    @property
    def last(self) -> dict:
        """The last CAP message of this alert."""
        return self.messages[-1]


@dataclass
class AlertEvent:
    """What happened to an alert at ``t`` [unix s]: ``kind`` raised / updated / cancelled / acknowledged.

    ``absorbed``: alerts merged into this one (an update references them); ``note``: why it was
    cancelled, or the operator's note; ``message``: the CAP message composed for it (None until then).
    """

    kind: str
    alert: Alert
    t: float
    absorbed: list[Alert] = field(default_factory=list)
    note: str = ""
    message: dict | None = None


def _alert_state(a: Alert) -> dict:
    return {"identifier": a.identifier, "hazard": a.hazard, "level": int(a.level), "cells": a.cells,
            "raised_at": float(a.raised_at), "published_cells": a.published_cells,
            "published_parts": int(a.published_parts), "messages": list(a.messages),
            "empty_since": None if a.empty_since is None else float(a.empty_since),
            "acknowledged_by": list(a.acknowledged_by),
            **({"place": a.place.to_state()} if a.place is not None else {})}


def _alert_of(s: dict) -> Alert:
    """An alert from `_alert_state`; a state saved with ``empty_ticks`` (ticks, before seconds) starts its clear
    wait again at the next tick without cells."""
    since = s.get("empty_since")
    return Alert(s["identifier"], s["hazard"], int(s["level"]), np.asarray(s["cells"]),
                 float(s["raised_at"]), np.asarray(s["published_cells"]), int(s["published_parts"]),
                 list(s["messages"]), None if since is None else float(since), list(s["acknowledged_by"]),
                 Place.from_state(s["place"]) if s.get("place") is not None else None)


def _joined(places: list[Place]) -> Place:
    """One place of several an alert carries (a segment split in two keeps one alert): links, cells, areas and
    descriptions joined, the worst level, the first one's evidence, key and names."""
    if len(places) == 1:
        return places[0]
    first = places[0]
    return Place(np.unique(np.concatenate([p.links for p in places])),
                 np.unique(np.concatenate([p.cells for p in places])), max(p.level for p in places),
                 " | ".join(p.description for p in places), [r for p in places for r in p.rings],
                 dict(first.evidence), first.key, first.name_en, first.name_zh)


def _jaccard_distance(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return 0.0 if union == 0 else 1.0 - inter / union


class AlertBook:
    """Active alerts of one twin and the rules that raise, update and cancel them.

    Parameters
    ----------
    district : str
        Short district name used in identifiers.
    clear_s : float
        Seconds of twin time an alert with no cells waits before its ``Cancel`` (0: cancelled at the first
        tick without cells). Counted in seconds, so the tick length does not change when an alert ends.
    area_change : float
        Jaccard distance of the cell set since the last message that makes an ``Update``.
    """

    def __init__(self, district: str, clear_s: float = 0.0, area_change: float = 0.2) -> None:
        if not clear_s >= 0.0:
            raise ValueError(f"AlertBook: clear_s must be >= 0 seconds, got {clear_s}")
        self.district = district
        self.clear_s, self.area_change = float(clear_s), area_change
        self.active: dict[str, Alert] = {}
        self.sequence = 0
        self.last_known: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------ public
    def tick(self, t: float, levels: dict[str, np.ndarray],
             places: dict[str, list[Place]] | None = None) -> list[AlertEvent]:
        """Advance one tick at unix time ``t`` [s] with each hazard's level grid (int, -1 no data); a hazard in
        ``places`` is taken from its places instead of its grid (see the module docstring)."""
        events: list[AlertEvent] = []
        places = places or {}
        for hazard in sorted(set(levels) | set(places)):
            if hazard in places:
                events += self._tick_places(t, hazard, places[hazard])
            else:
                events += self._tick_hazard(t, hazard, self._effective(hazard, np.asarray(levels[hazard])))
        return events

    def acknowledge(self, identifier: str, operator: str, t: float, note: str = "") -> AlertEvent | None:
        """An operator acknowledges an active alert at ``t`` [unix s]; None if this operator already did.

        Raises KeyError if the alert is not active.
        """
        alert = self.active[identifier]
        if operator in alert.acknowledged_by:
            return None
        alert.acknowledged_by.append(operator)
        return AlertEvent("acknowledged", alert, t, note=note)

    def refresh(self, t: float, identifier: str, note: str = "") -> AlertEvent | None:
        """An ``updated`` event at ``t`` [unix s] for an active alert whose level and area did not change but whose
        value moved (``note`` says how); None if the alert is not active. The alert itself is unchanged."""
        alert = self.active.get(identifier)
        return None if alert is None else AlertEvent("updated", alert, t, note=note)

    # ------------------------------------------------------------ snapshots (twin.live.snapshot)
    def save_state(self) -> dict:
        """What evolves: active alerts (with their CAP messages), the sequence, each hazard's last known levels."""
        return {"sequence": self.sequence, "last_known": dict(self.last_known),
                "active": [_alert_state(a) for a in self.active.values()]}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (on a fresh book)."""
        self.sequence = int(state["sequence"])
        self.last_known = {h: np.asarray(v, dtype=np.int8) for h, v in state["last_known"].items()}
        self.active = {a["identifier"]: _alert_of(a) for a in state["active"]}

    def of_hazard(self, hazard: str) -> list[Alert]:
        """Active alerts of a hazard, oldest first."""
        return sorted((a for a in self.active.values() if a.hazard == hazard), key=lambda a: a.raised_at)

    # ------------------------------------------------------------ per hazard
    def _effective(self, hazard: str, level: np.ndarray) -> np.ndarray:
        known = self.last_known.setdefault(hazard, np.zeros(level.shape, dtype=np.int8))
        fresh = level >= 0
        known[fresh] = level[fresh]
        return known.copy()

    def _tick_hazard(self, t: float, hazard: str, level: np.ndarray) -> list[AlertEvent]:
        labels, n = label_regions(level)
        regions = region_cells(labels, n)
        alerts = self.of_hazard(hazard)
        overlap = np.stack([overlap_counts(labels, n, a.cells) for a in alerts]) if alerts and n else \
            np.zeros((len(alerts), n), dtype=np.int64)  # alerts x regions
        flat = level.ravel()
        return self._carry(t, hazard, alerts, overlap, [(r, int(flat[r].max()), None) for r in regions])

    def _tick_places(self, t: float, hazard: str, places: list[Place]) -> list[AlertEvent]:
        alerts = self.of_hazard(hazard)
        overlap = np.zeros((len(alerts), len(places)), dtype=np.int64)  # alerts x places: same key, shared links
        for i, a in enumerate(alerts):
            links = a.place.links if a.place is not None else np.zeros(0, np.int64)
            key = a.place.key if a.place is not None else ""
            for r, p in enumerate(places):
                shared = np.intersect1d(links, p.links, assume_unique=True).size
                overlap[i, r] = KEY_MATCH + shared if key and key == p.key else shared
        return self._carry(t, hazard, alerts, overlap, [(p.cells, int(p.level), p) for p in places])

    def _carry(self, t: float, hazard: str, alerts: list[Alert], overlap: np.ndarray,
               regions: list[tuple[np.ndarray, int, Place | None]]) -> list[AlertEvent]:
        """Carry the alerts to this tick's regions (cells, level, place) by the alerts x regions ``overlap``."""
        owner = self._assign(overlap)
        absorber = self._absorbers(overlap, owner)
        events: list[AlertEvent] = []
        n = len(regions)
        for i, alert in enumerate(alerts):
            mine = [regions[r] for r in range(n) if owner[r] == i]
            if mine:
                cells = np.unique(np.concatenate([m[0] for m in mine]))
                absorbed = [alerts[j] for j in np.flatnonzero(absorber == i)]
                alert.place = _joined([m[2] for m in mine]) if mine[0][2] is not None else None
                events += self._continue(t, alert, cells, max(m[1] for m in mine), absorbed, len(mine))
            else:
                events += self._fade(t, alert, alerts[absorber[i]] if absorber[i] >= 0 else None)
        for r in range(n):
            if owner[r] < 0:
                events.append(self._raise(t, hazard, regions[r][0], regions[r][1], regions[r][2]))
        return events

    @staticmethod
    def _assign(overlap: np.ndarray) -> np.ndarray:
        """Index of the alert each region joins (-1: a new alert), from the alerts x regions overlap."""
        owner = np.full(overlap.shape[1], -1)
        if overlap.size == 0:
            return owner
        best = np.argmax(overlap, axis=0)  # ties go to the older alert (lower index)
        hit = overlap.max(axis=0) > 0
        owner[hit] = best[hit]
        return owner

    @staticmethod
    def _absorbers(overlap: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """For an alert that lost every region to others: the (oldest) alert that took one; else -1."""
        out = np.full(overlap.shape[0], -1)
        for j in range(overlap.shape[0]):
            if (owner == j).any():
                continue
            takers = owner[(overlap[j] > 0) & (owner >= 0)]
            if takers.size:
                out[j] = takers.min()
        return out

    def _continue(self, t: float, alert: Alert, cells: np.ndarray, level: int,
                  absorbed: list[Alert], parts: int) -> list[AlertEvent]:
        alert.cells, alert.empty_since = cells, None
        changed = level != alert.level or parts != alert.published_parts
        changed = changed or _jaccard_distance(cells, alert.published_cells) > self.area_change
        if not (changed or absorbed):
            return []
        alert.level, alert.published_cells, alert.published_parts = level, cells, parts
        return [AlertEvent("updated", alert, t, absorbed=absorbed)]

    def _fade(self, t: float, alert: Alert, into: Alert | None) -> list[AlertEvent]:
        """An alert with no region: cancelled at once if it merged into ``into``, else after the clear delay."""
        if into is None:
            if alert.empty_since is None:
                alert.empty_since = t
            if t - alert.empty_since < self.clear_s - 1e-6:
                return []
        note = f"merged into {into.identifier}" if into else "conditions back below the clear thresholds"
        del self.active[alert.identifier]
        return [AlertEvent("cancelled", alert, t, note=note)]

    def _raise(self, t: float, hazard: str, cells: np.ndarray, level: int, place: Place | None = None) -> AlertEvent:
        self.sequence += 1
        stamp = dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        identifier = f"citytwin.{self.district}.{hazard}.{stamp}.{self.sequence:05d}"
        alert = Alert(identifier, hazard, level, cells, t, cells, place=place)
        self.active[identifier] = alert
        return AlertEvent("raised", alert, t)
