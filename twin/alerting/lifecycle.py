"""The alert lifecycle: regions of warning cells become CAP alerts, tracked across ticks.

Every tick, for each hazard, the cells at level blue or above form 4-connected regions
(`twin.alerting.regions`). A region is one alert, and it is carried to the next tick by overlap:

- a region that overlaps no active alert raises a new alert (CAP ``Alert``);
- a region that overlaps active alerts joins the one it overlaps most (the older on a tie),
  so a growing, shrinking or moving area keeps its alert, and a split keeps both parts in
  one alert (its area then has several polygons);
- when regions merge, the alerts that lost their region are cancelled, saying into which
  alert they merged, and the survivor's ``Update`` references them;
- an alert whose level changes, whose area splits or joins up, or whose area changes by more
  than `area_change` (Jaccard distance of the cell sets since the last message) gets an
  ``Update``;
- an alert with no cells left is cancelled after `clear_ticks` more ticks (the cell-level
  state machine already holds levels through its own clear delay).

Cells with no data (level -1) keep their last known level: silence neither raises nor clears.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from twin.alerting import cap
from twin.alerting.regions import geocodes, label_regions, outline, overlap_counts, region_cells
from twin.district import geo
from twin.district.grid import GridSpec

log = logging.getLogger(__name__)

HAZARDS = {
    "crowd": {"category": "Safety", "event": "Crowd density warning",
              "instruction": "Stop the inflow into the area, open alternative exits and keep people moving."},
    "flood": {"category": "Met", "event": "Urban waterlogging warning",
              "instruction": "Close flooded underpasses to traffic and pedestrians and keep clear of deep water."},
    "rain": {"category": "Met", "event": "Rainstorm warning signal",
             "instruction": "Expect waterlogging: keep away from underpasses and low ground."},
    "traffic": {"category": "Transport", "event": "Traffic congestion warning",
                "instruction": "Divert traffic and check for an incident at the head of the queue."},
}
EXPIRES_S = 6 * 3600
"""An alert's ``expires`` is its last message plus this; a long alert is refreshed by updates. [s]"""

Evidence = Callable[[str, np.ndarray], dict[str, object]]
"""(hazard, flat cell indices) -> CAP parameters describing the evidence (peak values, devices)."""
Describe = Callable[[str, np.ndarray], str]
"""(hazard, flat cell indices) -> the areaDesc text."""


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
    empty_ticks: int = 0

    @property
    def last(self) -> dict:
        """The last CAP message of this alert."""
        return self.messages[-1]


@dataclass
class AlertEvent:
    """What changed this tick: ``kind`` raised / updated / cancelled, with the CAP message."""

    kind: str
    alert: Alert
    message: dict


def _jaccard_distance(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return 0.0 if union == 0 else 1.0 - inter / union


class AlertBook:
    """Active alerts of one twin and the rules that raise, update and cancel them.

    Parameters
    ----------
    grid : GridSpec
    sender : str
        CAP sender (no spaces or commas), e.g. ``twin.bund@citytwin``.
    district : str
        Short district name used in identifiers and area descriptions.
    status : str
        CAP status: ``Actual`` live, ``Exercise`` for scenarios.
    clear_ticks : int
        Ticks an alert with no cells waits before its ``Cancel``.
    area_change : float
        Jaccard distance of the cell set since the last message that makes an ``Update``.
    """

    def __init__(self, grid: GridSpec, sender: str, district: str, status: str = "Actual",
                 clear_ticks: int = 0, area_change: float = 0.2, evidence: Evidence | None = None,
                 describe: Describe | None = None, model_version: str = "") -> None:
        self.grid, self.sender, self.district, self.status = grid, sender, district, status
        self.clear_ticks, self.area_change = clear_ticks, area_change
        self.evidence = evidence or (lambda _h, _c: {})
        self.describe = describe or self.default_description
        self.model_version = model_version
        self.active: dict[str, Alert] = {}
        self.sequence = 0
        self.last_known: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------ public
    def tick(self, t: float, levels: dict[str, np.ndarray]) -> list[AlertEvent]:
        """Advance one tick at unix time ``t`` [s] with each hazard's level grid (int, -1 no data)."""
        events: list[AlertEvent] = []
        for hazard in sorted(levels):
            events += self._tick_hazard(t, hazard, self._effective(hazard, np.asarray(levels[hazard])))
        return events

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
        owner = self._assign(overlap)
        absorber = self._absorbers(overlap, owner)
        events: list[AlertEvent] = []
        flat = level.ravel()
        for i, alert in enumerate(alerts):
            mine = [regions[r] for r in range(n) if owner[r] == i]
            if mine:
                cells = np.sort(np.concatenate(mine))
                absorbed = [alerts[j] for j in np.flatnonzero(absorber == i)]
                events += self._continue(t, alert, cells, int(flat[cells].max()), absorbed, len(mine))
            else:
                events += self._fade(t, alert, alerts[absorber[i]] if absorber[i] >= 0 else None)
        for r in range(n):
            if owner[r] < 0:
                events.append(self._raise(t, hazard, regions[r], int(flat[regions[r]].max())))
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
        alert.cells, alert.empty_ticks = cells, 0
        changed = level != alert.level or parts != alert.published_parts
        changed = changed or _jaccard_distance(cells, alert.published_cells) > self.area_change
        if not (changed or absorbed):
            return []
        alert.level, alert.published_cells, alert.published_parts = level, cells, parts
        refs = [alert.last] + [a.last for a in absorbed]
        message = self._message(t, alert, "Update", refs)
        alert.messages.append(message)
        return [AlertEvent("updated", alert, message)]

    def _fade(self, t: float, alert: Alert, into: Alert | None) -> list[AlertEvent]:
        """An alert with no region: cancelled at once if it merged into ``into``, else after the clear delay."""
        if into is None:
            alert.empty_ticks += 1
            if alert.empty_ticks <= self.clear_ticks:
                return []
        note = f"merged into {into.identifier}" if into else "conditions back below the clear thresholds"
        message = self._message(t, alert, "Cancel", [alert.last], note=note)
        alert.messages.append(message)
        del self.active[alert.identifier]
        return [AlertEvent("cancelled", alert, message)]

    def _raise(self, t: float, hazard: str, cells: np.ndarray, level: int) -> AlertEvent:
        self.sequence += 1
        stamp = dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        identifier = f"citytwin.{self.district}.{hazard}.{stamp}.{self.sequence:05d}"
        alert = Alert(identifier, hazard, level, cells, t, cells)
        message = self._message(t, alert, "Alert", [])
        alert.messages.append(message)
        self.active[identifier] = alert
        return AlertEvent("raised", alert, message)

    # ------------------------------------------------------------ CAP
    def default_description(self, hazard: str, cells: np.ndarray) -> str:
        """``district: n cells around lat N lon E`` (the cells' mean centre)."""
        row, col = np.divmod(cells, self.grid.nx)
        lon, lat = geo.to_lonlat(self.grid.x[col], self.grid.y[row], self.grid.crs)
        clat, clon = float(np.mean(lat)), float(np.mean(lon))
        return f"{self.district}: {cells.size} cells around {clat:.5f} N {clon:.5f} E"

    def _message(self, t: float, alert: Alert, msg_type: str, refs: list[dict], note: str = "") -> dict:
        spec = HAZARDS[alert.hazard]
        sent = cap.cap_time(t)
        n = len(alert.messages)
        identifier = alert.identifier if msg_type == "Alert" else f"{alert.identifier}.{msg_type.lower()}{n}"
        colour = cap.LEVEL_COLOUR[alert.level]
        area_m2 = alert.cells.size * self.grid.cell_area
        params = {"warningLevel": colour, "hazard": alert.hazard, "cells": alert.cells.size,
                  "areaM2": f"{area_m2:.0f}", **self.evidence(alert.hazard, alert.cells)}
        if self.model_version:
            params["modelVersion"] = self.model_version
        headline = f"{colour.capitalize()} {spec['event'].lower()}, {self.district}"
        info = {
            "category": spec["category"], "event": spec["event"],
            "urgency": "Past" if msg_type == "Cancel" else cap.LEVEL_URGENCY[alert.level],
            "severity": cap.LEVEL_SEVERITY[alert.level], "certainty": "Observed",
            "onset": cap.cap_time(alert.raised_at), "expires": cap.cap_time(t + EXPIRES_S),
            "headline": ("Cleared: " + headline) if msg_type == "Cancel" else headline,
            "description": note or f"{spec['event']} at level {colour} over {area_m2:.0f} m2.",
            "instruction": "" if msg_type == "Cancel" else spec["instruction"],
            "parameter": cap.name_values(params),
            "area": [{"areaDesc": self.describe(alert.hazard, alert.cells),
                      "polygon": [cap.polygon_text(r) for r in outline(self.grid, alert.cells)],
                      "geocode": cap.name_values(("BeidouGridCode", c) for c in geocodes(self.grid, alert.cells))}],
        }
        message = {"identifier": identifier, "sender": self.sender, "sent": sent, "status": self.status,
                   "msgType": msg_type, "scope": "Public", "info": [info]}
        if refs:
            message["references"] = " ".join(cap.reference(m) for m in refs)
        return message
