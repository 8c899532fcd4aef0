"""Field units: patrol around their home base, respond to alerts, acknowledge them.

A patrolling unit walks (``patrol_kmh``) toward random way points within ``patrol_radius_m`` of home. On
``respond(unit_id, cap_json)`` for a hazard of its duty (`DUTIES`: police crowd and traffic, fire
floods, medical crowds) it publishes an ``ack`` on ``city/units/{id}/ack`` with the alert's identifier
(the identifier of its first CAP message, `alert_identifier`, whichever message of the alert reached
the unit first: the twin refuses an ack of a message identifier such as ``….update1``), drives straight toward
the centroid of the alert's first area at ``respond_kmh`` (straight line, not along roads: a simplification),
publishes ``on_scene`` once inside the area polygon (or within ``ARRIVE_M`` of the centroid), and
``resolved`` when the alert is cancelled while it is on scene; then it goes back to patrolling.
Positions are NMEA RMC+GGA with the ``GB`` talker every ``report_s`` seconds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry import Point, Polygon

from ingest.batch import Batch
from ingest.decoders.ack import encode_ack
from ingest.decoders.nmea import encode_nmea
from ingest.registry import Device
from twin.district.geo import to_lonlat, to_projected

ARRIVE_M = 30.0
"""A unit this close to the alert area's centroid is on scene [m]."""
DUTIES = {"police": {"crowd", "traffic"}, "fire": {"flood"}, "medical": {"crowd"}}
"""Hazards (the CAP ``hazard`` parameter) each ``unit_type`` answers; other types answer every alert."""
_MESSAGE_SUFFIX = re.compile(r"\.(update|cancel|ack)\d+$")


def alert_identifier(message_identifier: str) -> str:
    """The identifier of the alert a CAP message belongs to: its first message's (docs/contract/cap.md):
    ``….update3``, ``….ack1`` and ``….cancel7`` -> ``…``."""
    return _MESSAGE_SUFFIX.sub("", message_identifier)


@dataclass
class Unit:
    """State of one field unit (positions in EPSG:4549 [m])."""

    id: str
    home: tuple[float, float]
    x: float
    y: float
    target: tuple[float, float]
    next_report: float
    alert: str = ""
    """The alert it is on (the alert's identifier), or ""."""
    area: Polygon | None = None
    on_scene: bool = False
    pending: list[tuple[str, str]] = field(default_factory=list)
    speed_kmh: float = 0.0
    course: float = 0.0
    duties: frozenset[str] | None = None
    """Hazards it answers (None: all)."""


def parse_cap_area(cap: dict[str, Any]) -> Polygon | None:
    """First area polygon of a CAP JSON message, projected to EPSG:4549 (``lat,lon`` pairs in CAP)."""
    for info in cap.get("info") or []:
        for area in info.get("area") or []:
            for poly in area.get("polygon") or []:
                pairs = [p.split(",") for p in str(poly).split()]
                lat = np.array([float(a) for a, _ in pairs])
                lon = np.array([float(b) for _, b in pairs])
                x, y = to_projected(lon, lat)
                return Polygon(list(zip(np.atleast_1d(x), np.atleast_1d(y), strict=True)))
    return None


class Units:
    """The field units of a registry, patrolling around their homes."""

    def __init__(self, devices: list[Device], rng: np.random.Generator, t0: float, *, report_s: float = 5.0,
                 patrol_radius_m: float = 300.0, patrol_kmh: float = 5.0, respond_kmh: float = 30.0) -> None:
        self.rng, self.report_s, self.radius = rng, report_s, patrol_radius_m
        self.patrol_kmh, self.respond_kmh = patrol_kmh, respond_kmh
        self.units: dict[str, Unit] = {}
        self.acks: dict[str, int] = {}
        """Acknowledgements sent, by status."""
        for d in devices:
            lon, lat = (d.geometry or {}).get("coordinates", (121.4855, 31.2405))[:2]
            x, y = to_projected(lon, lat)
            home = (float(x), float(y))
            duties = DUTIES.get(str(d.properties.get("unit_type", "")))
            self.units[d.id] = Unit(d.id, home, home[0], home[1], self._waypoint(home),
                                    t0 + float(rng.uniform(0, report_s)),
                                    duties=frozenset(duties) if duties is not None else None)

    def _waypoint(self, home: tuple[float, float]) -> tuple[float, float]:
        r = self.radius * math.sqrt(float(self.rng.uniform()))
        a = float(self.rng.uniform(0, 2 * math.pi))
        return home[0] + r * math.cos(a), home[1] + r * math.sin(a)

    def respond(self, unit_id: str, cap_json: str | bytes | dict[str, Any]) -> None:
        """Make ``unit_id`` respond to a CAP message (Alert/Update: go and ack; Cancel: resolve, patrol).

        Raises ``KeyError`` for an unknown unit and ``ValueError`` for a CAP message without identifier."""
        u = self.units[unit_id]
        cap = cap_json if isinstance(cap_json, dict) else json.loads(cap_json)
        ident = alert_identifier(str(cap.get("identifier") or ""))
        if not ident:
            raise ValueError("CAP message without identifier")
        mine = bool(u.alert) and u.alert == ident
        if cap.get("msgType") == "Cancel":
            if mine:
                if u.on_scene:
                    u.pending.append(("resolved", u.alert))
                u.alert, u.area, u.on_scene = "", None, False
                u.target = self._waypoint(u.home)
            return
        area = parse_cap_area(cap)
        if area is None or area.is_empty or not _on_duty(u, cap):
            return
        if mine:
            u.alert, u.area = ident, area  # an update: follow the new area, no new ack
            return
        if u.alert:
            return  # busy with another alert
        u.alert, u.area, u.on_scene = ident, area, False
        u.target = (area.centroid.x, area.centroid.y)
        u.pending.append(("ack", ident))

    def _move(self, u: Unit, dt: float) -> None:
        kmh = self.respond_kmh if u.alert else self.patrol_kmh
        dx, dy = u.target[0] - u.x, u.target[1] - u.y
        dist = math.hypot(dx, dy)
        step = kmh / 3.6 * dt
        if dist > 0:
            u.course = math.degrees(math.atan2(dx, dy)) % 360.0
        if dist <= step:
            u.x, u.y = u.target
            u.speed_kmh = dist / dt * 3.6 if dt > 0 else 0.0
            if not u.alert:
                u.target = self._waypoint(u.home)
        else:
            u.x, u.y = u.x + dx / dist * step, u.y + dy / dist * step
            u.speed_kmh = kmh
        if u.alert and not u.on_scene and u.area is not None:
            here = Point(u.x, u.y)
            if u.area.contains(here) or here.distance(u.area.centroid) <= ARRIVE_M:
                u.on_scene = True
                u.pending.append(("on_scene", u.alert))

    def step(self, t: float, dt: float, prefix: str) -> list[tuple[str, bytes]]:
        """Move every unit to time ``t``; return acks and the positions due."""
        out = []
        for u in self.units.values():
            self._move(u, dt)
            for status, ref in u.pending:
                self.acks[status] = self.acks.get(status, 0) + 1
                out.append((f"{prefix}units/{u.id}/ack", encode_ack(
                    Batch.build(1, device=u.id, t=round(t, 3), quantity=status, ref=ref))))
            u.pending.clear()
            if t + 1e-9 >= u.next_report:
                u.next_report += self.report_s * max(1, int((t - u.next_report) // self.report_s) + 1)
                lon, lat = to_lonlat(u.x, u.y)
                b = Batch.build(1, device=u.id, t=round(t, 2), quantity="position", lon=float(lon), lat=float(lat),
                                speed_kmh=u.speed_kmh, course_deg=u.course, hdop=0.9, fix=1)
                out.append((f"{prefix}beidou/{u.id}", encode_nmea(b, talker="GB", types=("RMC", "GGA"))))
        return out


def _on_duty(u: Unit, cap: dict[str, Any]) -> bool:
    """Whether ``u`` answers this CAP alert's hazard (police: crowd and traffic, fire: flood, medical: crowd)."""
    if u.duties is None:
        return True
    for info in cap.get("info") or []:
        for p in info.get("parameter") or []:
            if p.get("valueName") == "hazard":
                return p.get("value") in u.duties
    return True
