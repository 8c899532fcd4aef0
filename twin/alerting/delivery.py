"""Routing alerts to field units: who is inside an alert's area plus a buffer, and who is on scene.

A unit gets an alert's message when its last Beidou position is inside the alert area
grown by `buffer_m` (default 500 m); it gets the alert as soon as it moves into such an
area, and it gets every later message (updates and the cancel) of an alert it has had,
wherever it is then. When an alert is first delivered and no located unit is within its
reach, the `nearest` closest located units get it instead, so every alert has someone on it.
A unit that was sent the alert and is inside the area itself (no buffer) is on scene; its first
such position is its arrival. A unit that was never sent the alert is never on scene, wherever it is.

The router also answers whether a unit may acknowledge an alert (`ack_problem`): only an alert it
was sent, active or cancelled not long ago (the units of the last `CLOSED_MEMORY` cancelled alerts
are kept, so a late ``ack`` or a ``resolved`` after the Cancel is still recognised).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import shapely

from twin.district.grid import GridSpec


class Located(Protocol):
    """A field unit as delivery sees it: its id and last known position (grid CRS) and time."""

    id: str
    x: float
    y: float
    t: float

    @property
    def located(self) -> bool: ...


DEFAULT_BUFFER_M = 500.0
DEFAULT_NEAREST = 3
"""Units an alert goes to when nobody is within its reach [1]."""
CLOSED_MEMORY = 1024
"""Cancelled alerts whose recipients are remembered, so their units may still acknowledge them [alert]."""
UNKNOWN_ALERT, NOT_SENT = "unknown_alert", "not_sent"
"""Why a unit may not acknowledge an alert (`Router.ack_problem`)."""


@dataclass
class AlertArea:
    """An alert's area (projected, grid CRS) and who has had which of its messages."""

    identifier: str
    raised_at: float
    area: shapely.Geometry
    reach: shapely.Geometry
    version: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    on_scene: dict[str, float] = field(default_factory=dict)


class Router:
    """Which units get which alert messages, and when units arrive on scene."""

    def __init__(self, grid: GridSpec, buffer_m: float = DEFAULT_BUFFER_M,
                 nearest: int = DEFAULT_NEAREST) -> None:
        if buffer_m < 0:
            raise ValueError(f"buffer must be >= 0 m, got {buffer_m}")
        if nearest < 0:
            raise ValueError(f"nearest must be >= 0 units, got {nearest}")
        self.grid, self.buffer_m, self.nearest = grid, buffer_m, nearest
        self.areas: dict[str, AlertArea] = {}
        self.closed: OrderedDict[str, frozenset[str]] = OrderedDict()
        """Recently cancelled alert -> the units it was sent to (the last `CLOSED_MEMORY`, oldest first)."""

    # ------------------------------------------------------------ snapshots (twin.live.snapshot)
    def save_state(self) -> dict:
        """What evolves: every alert area (geometry as WKB hex, exact) with its deliveries and arrivals, and
        the recipients of recently cancelled alerts."""
        return {"areas": [{"identifier": a.identifier, "raised_at": float(a.raised_at),
                           "area": shapely.to_wkb(a.area, hex=True), "reach": shapely.to_wkb(a.reach, hex=True),
                           "version": int(a.version), "delivered": dict(a.delivered), "on_scene": dict(a.on_scene)}
                          for a in self.areas.values()],
                "closed": [{"identifier": k, "units": sorted(v)} for k, v in self.closed.items()]}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (on a fresh router; a state without ``closed`` remembers none)."""
        self.areas = {}
        self.closed = OrderedDict((c["identifier"], frozenset(c["units"])) for c in state.get("closed", []))
        for s in state["areas"]:
            area, reach = shapely.from_wkb(s["area"]), shapely.from_wkb(s["reach"])
            shapely.prepare(area)
            shapely.prepare(reach)
            self.areas[s["identifier"]] = AlertArea(s["identifier"], float(s["raised_at"]), area, reach,
                                                    int(s["version"]), {k: int(v) for k, v in s["delivered"].items()},
                                                    {k: float(v) for k, v in s["on_scene"].items()})

    def set_area(self, identifier: str, raised_at: float, cells: np.ndarray) -> AlertArea:
        """Create or move an alert's area; its version goes up (a new message to deliver)."""
        area = self.grid.cells_union(cells)
        reach = area
        if self.buffer_m > 0:
            reach = shapely.simplify(area, self.grid.cell_size).buffer(self.buffer_m, quad_segs=4)
        shapely.prepare(area)
        shapely.prepare(reach)
        current = self.areas.get(identifier)
        if current is None:
            current = self.areas[identifier] = AlertArea(identifier, raised_at, area, reach)
        else:
            current.area, current.reach = area, reach
        current.version += 1
        return current

    def recipients(self, identifier: str, units: list[Located], nearest_if_none: bool = False) -> list[str]:
        """Units that must get the alert's current message now (inside its reach, or had it before).

        With ``nearest_if_none`` (``units`` being every located unit), an alert nobody has had yet and
        nobody is within reach of goes to the `nearest` closest units."""
        a = self.areas[identifier]
        out = []
        for u in units:
            if a.delivered.get(u.id, 0) >= a.version:
                continue
            if u.id in a.delivered or (u.located and shapely.contains_xy(a.reach, u.x, u.y)):
                out.append(u.id)
        if nearest_if_none and not out and not a.delivered:
            out = self._nearest(a, units)
        return out

    def _nearest(self, a: AlertArea, units: list[Located]) -> list[str]:
        """The `nearest` located units closest to the area (ties by id)."""
        located = [u for u in units if u.located]
        if not located or self.nearest == 0:
            return []
        d = shapely.distance(a.area, shapely.points([(u.x, u.y) for u in located]))
        order = sorted(range(len(located)), key=lambda i: (float(d[i]), located[i].id))
        return [located[i].id for i in order[: self.nearest]]

    def mark_delivered(self, identifier: str, unit_ids: list[str]) -> None:
        """The current message of the alert is on its way to these units."""
        a = self.areas[identifier]
        for uid in unit_ids:
            a.delivered[uid] = a.version

    def ack_problem(self, identifier: str, unit_id: str) -> str | None:
        """Why ``unit_id`` may not acknowledge alert ``identifier``: `UNKNOWN_ALERT` (no such alert, active or
        recently cancelled), `NOT_SENT` (the unit was never sent it); None if it may."""
        a = self.areas.get(identifier)
        sent = a.delivered if a is not None else self.closed.get(identifier)
        if sent is None:
            return UNKNOWN_ALERT
        return None if unit_id in sent else NOT_SENT

    def arrivals(self, units: list[Located]) -> list[tuple[str, str, float, float]]:
        """(alert, unit, time, seconds since the alert was raised) for units newly inside an area; only units
        that were sent the alert can arrive."""
        out = []
        for a in self.areas.values():
            for u in units:
                if (u.id in a.on_scene or u.id not in a.delivered or not u.located
                        or not shapely.contains_xy(a.area, u.x, u.y)):
                    continue
                a.on_scene[u.id] = u.t
                out.append((a.identifier, u.id, u.t, u.t - a.raised_at))
        return out

    def close(self, identifier: str) -> None:
        """The alert is over: forget its area, remember (boundedly) whom it was sent to."""
        a = self.areas.pop(identifier, None)
        if a is None:
            return
        self.closed[identifier] = frozenset(a.delivered)
        self.closed.move_to_end(identifier)
        while len(self.closed) > CLOSED_MEMORY:
            self.closed.popitem(last=False)
