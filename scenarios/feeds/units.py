"""Field units: patrol around their home base, follow their tasks, respond to alerts, acknowledge them.

A patrolling unit walks (``patrol_kmh``) toward random way points within ``patrol_radius_m`` of home. On
``respond(unit_id, cap_json)`` for a hazard of its duty (`DUTIES`: police crowd and traffic, fire
floods, medical crowds) it publishes an ``ack`` on ``city/units/{id}/ack`` with the alert's identifier
(the identifier of its first CAP message, `alert_identifier`, whichever message of the alert reached
the unit first: the twin refuses an ack of a message identifier such as ``….update1``), drives straight toward
the centroid of the alert's first area at ``respond_kmh`` (straight line, not along roads: a simplification),
publishes ``on_scene`` once inside the area polygon (or within ``ARRIVE_M`` of the centroid), and
``resolved`` when the alert is cancelled while it is on scene; then it goes back to patrolling.
Positions are NMEA RMC+GGA with the ``GB`` talker every ``report_s`` seconds.

Tasks (``city/units/{id}/tasks``, the case desk's orders, docs/guides/cases.md) come first: ``follow_task(unit_id,
task_json)`` queues a task; a unit takes its tasks one at a time, in the order they came. It answers on
``city/units/{id}/tasks/status`` (`ingest.decoders.task.encode_task_status`): ``accepted`` in the step after the
task came, ``en_route`` in the next, then drives straight to the task's place at ``respond_kmh``; once there and its
next Beidou position from inside the place has gone out (the twin confirms on scene by position), ``on_scene`` in
the step after; then it works on scene and answers ``disposed`` with a short note in Chinese and English, and is
free for its next task. How long it works [simulated s]: on a hazard case (a category with an alert hazard,
`twin.cases.services`, at an alert's place: the place key is not a report's ``report:…`` or an operator's
``operator:…``) until the alerts of that hazard that were active around the place when the task came (their area
within the place's radius; the alerts it came for) have all been cancelled, at least ``HAZARD_WORK_MIN_S`` and at
most ``HAZARD_WORK_MAX_S``; on any other case (a citizen report's, an operator's) ``REPORT_WORK_S``. A unit learns
of active alerts from the public ``city/alerts/{id}`` messages (`observe_alert`). A task message with ``"status":
"cancelled"`` withdraws the task (or drops it from the queue). A unit on a task takes on no alert (it does not
acknowledge new ones) and leaves an alert that reached it then to the case desk for good (it does not take it up
later); a task that comes while it is on an alert ends that response without ``resolved``.
"""

from __future__ import annotations

import functools
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
from ingest.decoders.task import encode_task_status
from ingest.registry import Device
from twin.cases.services import Catalogue
from twin.district.geo import to_lonlat, to_projected

ARRIVE_M = 30.0
"""A unit this close to the alert area's centroid is on scene [m]."""
DUTIES = {"police": {"crowd", "traffic"}, "fire": {"flood"}, "medical": {"crowd"}}
"""Hazards (the CAP ``hazard`` parameter) each ``unit_type`` answers; other types answer every alert."""
HAZARD_WORK_MIN_S = 60.0
"""Shortest work on scene of a hazard case, even when its alerts are already cancelled [s]."""
HAZARD_WORK_MAX_S = 300.0
"""Longest work on scene of a hazard case: after it the unit reports the case disposed, alert or not [s]."""
REPORT_WORK_S = 240.0
"""Work on scene of a case that is not a hazard case (a citizen report's, an operator's) [s]."""
NOT_ALERT_PLACES = ("report:", "operator:")
"""Place key prefixes of cases opened by a report or an operator (`twin.cases.reports`, `twin.live.case_desk`)."""
DISPOSED_NOTES = {
    "crowd_safety": "已设置隔离、疏导人流，现场秩序恢复 / barriers set up and the crowd thinned out, order restored",
    "waterlogging": "已封闭积水路段、协助排水，道路恢复通行 / lane closed, water pumped away, road open again",
    "congestion": "已现场指挥疏导交通，车流恢复 / traffic directed on the spot, vehicles moving again",
}
"""The note of a ``disposed`` answer, by case category (others: `DEFAULT_NOTE`)."""
DEFAULT_NOTE = "现场已处置完毕 / dealt with on the spot"
_MESSAGE_SUFFIX = re.compile(r"\.(update|cancel|ack)\d+$")


def alert_identifier(message_identifier: str) -> str:
    """The identifier of the alert a CAP message belongs to: its first message's (docs/contract/cap.md):
    ``….update3``, ``….ack1`` and ``….cancel7`` -> ``…``."""
    return _MESSAGE_SUFFIX.sub("", message_identifier)


@dataclass
class Task:
    """A task a unit follows: the case, its place (EPSG:4549 [m]) and how far it reaches [m]."""

    case: str
    category: str
    place: tuple[float, float]
    radius_m: float
    hazard_case: bool = False
    """Whether it is a hazard case (see the module docstring)."""
    alerts: tuple[str, ...] = ()
    """The active alerts it came for (see the module docstring)."""
    stage: str = "new"
    """new -> accepted -> en_route -> arrived -> seen (a position from inside went out) -> on_scene."""
    on_scene_at: float = math.nan


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
    task: Task | None = None
    """The task it follows, or None."""
    queue: list[Task] = field(default_factory=list)
    """Tasks waiting for it, oldest first."""
    answers: list[tuple[str, str, str]] = field(default_factory=list)
    """Task answers due: (case, status, note)."""
    passed: set[str] = field(default_factory=set)
    """Alerts that reached it while on a task: left to the case desk."""
    taken: set[tuple[str, Any]] = field(default_factory=set)
    """(case, the task's ``t``) of every task it has taken: a message seen again is a repeat (QoS 1 is at least
    once); a new dispatch of the same case (after a reopening) has a new ``t``."""


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
        self.task_answers: dict[str, int] = {}
        """Task answers sent, by status."""
        self.tasks: dict[str, int] = {}
        """Task messages taken, by status (``dispatched``, ``cancelled``, ``repeated``)."""
        self.public: dict[str, tuple[str, Polygon]] = {}
        """Active alerts the units know of (`observe_alert`): identifier -> (hazard, area)."""
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
        if u.task is not None:
            u.passed.add(ident)  # a unit on a task follows its task
            return
        if ident in u.passed or area is None or area.is_empty or not _on_duty(u, cap):
            return
        if mine:
            u.alert, u.area = ident, area  # an update: follow the new area, no new ack
            return
        if u.alert:
            return  # busy with another alert
        u.alert, u.area, u.on_scene = ident, area, False
        u.target = (area.centroid.x, area.centroid.y)
        u.pending.append(("ack", ident))

    def observe_alert(self, cap_json: str | bytes | dict[str, Any]) -> None:
        """Take note of a public CAP message (``city/alerts/{id}``): an Alert or Update makes its alert active
        with its first area, a Cancel ends it. Raises ``ValueError`` for a message without identifier."""
        cap = cap_json if isinstance(cap_json, dict) else json.loads(cap_json)
        ident = alert_identifier(str(cap.get("identifier") or ""))
        if not ident:
            raise ValueError("CAP message without identifier")
        if cap.get("msgType") == "Cancel":
            self.public.pop(ident, None)
            return
        area = parse_cap_area(cap)
        if area is not None and not area.is_empty:
            self.public[ident] = (cap_hazard(cap) or "", area)

    def follow_task(self, unit_id: str, task_json: str | bytes | dict[str, Any]) -> None:
        """Give ``unit_id`` a task message of the case desk (see the module docstring): a task is queued (the same
        message again, or a task of a case it has now, is a repeat and ignored), ``"status": "cancelled"`` withdraws
        it.

        Raises ``KeyError`` for an unknown unit, ``ValueError`` / ``TypeError`` for a message without case or
        place."""
        u = self.units[unit_id]
        doc = task_json if isinstance(task_json, dict) else json.loads(task_json)
        case = str(doc.get("case") or "")
        if not case:
            raise ValueError("task message without case")
        if doc.get("status") == "cancelled":
            self._count_task("cancelled")
            self._withdraw(u, case)
            return
        key = (case, doc.get("t"))
        if key in u.taken or any(t.case == case for t in [u.task, *u.queue] if t is not None):
            self._count_task("repeated")
            return
        task = self._task(doc, case)
        u.taken.add(key)
        self._count_task("dispatched")
        if u.task is None:
            self._start(u, task)
        else:
            u.queue.append(task)

    def _count_task(self, status: str) -> None:
        self.tasks[status] = self.tasks.get(status, 0) + 1

    def _task(self, doc: dict[str, Any], case: str) -> Task:
        """A `Task` of a task message, with the active alerts of its hazard around its place."""
        place = doc["place"]
        x, y = to_projected(float(place["lon"]), float(place["lat"]))
        radius = float(place.get("radius_m", 50.0))
        category = str(doc.get("category", ""))
        hazard = hazard_of(category)
        at_alert = not str(place.get("key", "")).startswith(NOT_ALERT_PLACES)
        here = Point(float(x), float(y))
        alerts = tuple(a for a, (h, area) in self.public.items()
                       if hazard and h == hazard and area.distance(here) <= radius)
        return Task(case, category, (float(x), float(y)), radius, bool(hazard) and at_alert, alerts)

    def _start(self, u: Unit, task: Task) -> None:
        """Make ``task`` the unit's current one: it drops any alert response (for good) and heads for the place."""
        u.task = task
        if u.alert:
            u.passed.add(u.alert)
        u.alert, u.area, u.on_scene = "", None, False
        u.target = task.place

    def _withdraw(self, u: Unit, case: str) -> None:
        u.queue = [t for t in u.queue if t.case != case]
        if u.task is not None and u.task.case == case:
            self._next(u)

    def _next(self, u: Unit) -> None:
        """The unit is done with its task: the next one waiting, or back to patrolling."""
        u.task = None
        if u.queue:
            self._start(u, u.queue.pop(0))
        else:
            u.target = self._waypoint(u.home)

    def _advance_task(self, u: Unit, t: float) -> None:
        """One step of the task's answers (at most one stage a step; see the module docstring)."""
        task = u.task
        if task is None:
            return
        if task.stage in ("new", "accepted"):
            task.stage = "accepted" if task.stage == "new" else "en_route"
            u.answers.append((task.case, task.stage, ""))
        elif task.stage == "en_route" and math.dist((u.x, u.y), task.place) <= min(ARRIVE_M, task.radius_m / 2):
            task.stage = "arrived"
        elif task.stage == "seen":
            task.stage, task.on_scene_at = "on_scene", t
            u.answers.append((task.case, "on_scene", ""))
        elif task.stage == "on_scene" and self._work_done(task, t):
            u.answers.append((task.case, "disposed", DISPOSED_NOTES.get(task.category, DEFAULT_NOTE)))
            self._next(u)

    def _work_done(self, task: Task, t: float) -> bool:
        """Whether the unit has worked on scene long enough (see the module docstring)."""
        worked = t - task.on_scene_at
        if not task.hazard_case:
            return worked >= REPORT_WORK_S - 1e-9
        if worked >= HAZARD_WORK_MAX_S - 1e-9:
            return True
        return worked >= HAZARD_WORK_MIN_S - 1e-9 and not any(a in self.public for a in task.alerts)

    def _move(self, u: Unit, dt: float) -> None:
        busy = bool(u.alert) or u.task is not None
        kmh = self.respond_kmh if busy else self.patrol_kmh
        dx, dy = u.target[0] - u.x, u.target[1] - u.y
        dist = math.hypot(dx, dy)
        step = kmh / 3.6 * dt
        if dist > 0:
            u.course = math.degrees(math.atan2(dx, dy)) % 360.0
        if dist <= step:
            u.x, u.y = u.target
            u.speed_kmh = dist / dt * 3.6 if dt > 0 else 0.0
            if not busy:
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
        """Move every unit to time ``t``; return, unit by unit, its alert acks, task answers and position due."""
        out = []
        for u in self.units.values():
            self._move(u, dt)
            self._advance_task(u, t)
            for status, ref in u.pending:
                self.acks[status] = self.acks.get(status, 0) + 1
                out.append((f"{prefix}units/{u.id}/ack", encode_ack(
                    Batch.build(1, device=u.id, t=round(t, 3), quantity=status, ref=ref))))
            u.pending.clear()
            for case, status, note in u.answers:
                self.task_answers[status] = self.task_answers.get(status, 0) + 1
                out.append((f"{prefix}units/{u.id}/tasks/status", encode_task_status(
                    Batch.build(1, device=u.id, t=round(t, 3), quantity=f"task_{status}", ref=case, note=note))))
            u.answers.clear()
            if t + 1e-9 >= u.next_report:
                out.append(self._position(u, t, prefix))
        return out

    def _position(self, u: Unit, t: float, prefix: str) -> tuple[str, bytes]:
        """The unit's Beidou position now; the first one from inside its task's place lets it report on scene."""
        u.next_report += self.report_s * max(1, int((t - u.next_report) // self.report_s) + 1)
        if u.task is not None and u.task.stage == "arrived":
            u.task.stage = "seen"
        lon, lat = to_lonlat(u.x, u.y)
        b = Batch.build(1, device=u.id, t=round(t, 2), quantity="position", lon=float(lon), lat=float(lat),
                        speed_kmh=u.speed_kmh, course_deg=u.course, hdop=0.9, fix=1)
        return f"{prefix}beidou/{u.id}", encode_nmea(b, talker="GB", types=("RMC", "GGA"))


def cap_hazard(cap: dict[str, Any]) -> str | None:
    """The ``hazard`` parameter of a CAP message, or None."""
    for info in cap.get("info") or []:
        for p in info.get("parameter") or []:
            if p.get("valueName") == "hazard":
                return str(p.get("value"))
    return None


def _on_duty(u: Unit, cap: dict[str, Any]) -> bool:
    """Whether ``u`` answers this CAP alert's hazard (police: crowd and traffic, fire: flood, medical: crowd)."""
    hazard = cap_hazard(cap)
    return u.duties is None or hazard is None or hazard in u.duties


@functools.lru_cache(maxsize=1)
def _hazards() -> dict[str, str]:
    return {s.code: s.hazard for s in Catalogue.load().all()}


def hazard_of(category: str) -> str:
    """The alert hazard a case category answers (`twin.cases.services`: ``waterlogging`` -> ``flood``), "" none."""
    return _hazards().get(category, "")
