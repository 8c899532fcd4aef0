"""The case state machine: a case is the fold of its events, state = fold(events) (docs/contract/cases.md).

A case opens with an ``opened`` event (n = 0) and changes only by appending events; `next_case` applies one event
to a case and `fold` applies them all, so replaying the stored events (audit) gives the state the live book holds.
Every event says who (``actor``), when (``t``, twin time [unix s]) and why (``reason``).

Status-changing kinds and the statuses they are allowed from are `TRANSITIONS`; ``declined`` and ``reopened`` take
the case back to ``new`` without an assignee, ``reopened`` also starts a new *round* (``reached`` and ``escalated``
cleared), ``declined`` forgets the assignment (``reached`` of dispatched, accepted and en_route, and the escalated
steps accept and on_scene) so the dispatch step is due again; a ``dispatched`` to another unit than the assignee
forgets the assignment the same way, so the new unit's steps are timed from its own dispatch and escalate again.
The other kinds (`NOTE_KINDS`) are allowed in every status, but a closed or cancelled case takes only ``noted`` and
``attached``. An event that is not allowed raises `CaseError`; nothing else does.

A unit's answer (accepted, declined, en_route, on_scene, disposed) may carry ``unit`` in its data: it must then be
the case's assignee (else ``not_assigned``); an operator entering a step for a unit leaves it out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

STATUSES = ("new", "dispatched", "accepted", "en_route", "on_scene", "disposed", "verified", "closed", "cancelled")
OPEN_STATUSES = tuple(s for s in STATUSES if s not in ("closed", "cancelled"))
EVENT_KINDS = ("opened", "dispatched", "accepted", "declined", "en_route", "on_scene", "disposed", "verified",
               "closed", "reopened", "cancelled", "linked", "escalated", "noted", "attached", "prioritised")
TRANSITIONS: dict[str, frozenset[str]] = {
    "dispatched": frozenset({"new", "dispatched", "accepted", "en_route"}),
    "accepted": frozenset({"dispatched"}),
    "declined": frozenset({"dispatched", "accepted"}),
    "en_route": frozenset({"dispatched", "accepted"}),
    "on_scene": frozenset({"dispatched", "accepted", "en_route"}),
    "disposed": frozenset({"on_scene"}),
    "verified": frozenset({"disposed"}),
    "closed": frozenset({"verified"}),
    "reopened": frozenset({"disposed", "verified", "closed"}),
    "cancelled": frozenset(OPEN_STATUSES),
}
"""Status-changing kind -> the statuses it is allowed from."""
STATUS_AFTER = {"dispatched": "dispatched", "accepted": "accepted", "declined": "new", "en_route": "en_route",
                "on_scene": "on_scene", "disposed": "disposed", "verified": "verified", "closed": "closed",
                "reopened": "new", "cancelled": "cancelled"}
"""Status-changing kind -> the status it leads to."""
NOTE_KINDS = ("linked", "escalated", "noted", "attached", "prioritised")
"""Kinds that change no status."""
FINAL_KINDS = frozenset({"noted", "attached"})
"""What a closed or cancelled case still takes."""
UNIT_ANSWERS = ("accepted", "declined", "en_route", "on_scene", "disposed")
"""The kinds a field unit answers a task with (besides its ``declined``, the steps it reports)."""
ASSIGNMENT_STATUSES = ("dispatched", "accepted", "en_route")
"""Reached statuses a ``declined`` (or a dispatch to another unit) forgets."""
ASSIGNMENT_STEPS = frozenset({"accept", "on_scene"})
"""Escalated steps a ``declined`` (or a dispatch to another unit) forgets: the next unit's are timed afresh."""
STEPS = ("dispatch", "accept", "on_scene", "dispose", "verify", "close")
"""The timed steps (`twin.cases.limits`)."""
ERROR_CODES = ("unknown_case", "bad_transition", "not_assigned", "bad_request")
SOURCES = ("alert", "operator", "report")
VERIFY_MODES = ("sensors", "manual")
PRIORITIES = (1, 2, 3)
"""1 urgent, 2 high, 3 normal."""
MAX_ACTOR = 64
MAX_REASON = 1000
MAX_URL = 2048
MAX_NAME = 200
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
"""A category (service) code."""
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


class CaseError(ValueError):
    """An event or request that cannot be applied: ``code`` one of `ERROR_CODES`, ``detail`` says why; ``reason``,
    for a refused citizen report, its dead-letter reason (``unknown_category``, ``outside_grid`` ...), else ""."""

    def __init__(self, code: str, detail: str, reason: str = "") -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown CaseError code {code!r}; codes: {', '.join(ERROR_CODES)}")
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.reason = code, detail, reason


def _bad(detail: str) -> CaseError:
    return CaseError("bad_request", detail)


def _finite(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise _bad(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _text(what: str, value: object, limit: int, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string, got {type(value).__name__}")
    if not empty and not value.strip():
        raise _bad(f"{what} must not be empty")
    if len(value) > limit:
        raise _bad(f"{what} is too long ({len(value)} characters, at most {limit})")
    return value


def _priority(value: object) -> int:
    if isinstance(value, bool) or value not in PRIORITIES:
        raise _bad(f"priority must be 1 (urgent), 2 (high) or 3 (normal), got {value!r}")
    return int(value)


def check_url(value: object) -> str:
    """An attachment or media URL: http(s), at most `MAX_URL` characters; CaseError ``bad_request`` otherwise."""
    url = _text("url", value, MAX_URL)
    if not URL_RE.match(url):
        raise _bad(f"url must be an http(s) URL, got {url[:80]!r}")
    return url


@dataclass(frozen=True)
class CasePlace:
    """Where a case is: a disc of ``radius_m`` [m] around (``lon``, ``lat``) [deg, CGCS2000], with a key (an alert
    place key such as ``flood:point:water-03``, or ``report:<id>``) and names in Chinese and English."""

    key: str
    name_zh: str
    name_en: str
    lon: float
    lat: float
    radius_m: float = 50.0

    def as_dict(self) -> dict:
        """Plain values (the ``place`` of an ``opened`` event)."""
        return {"key": self.key, "name_zh": self.name_zh, "name_en": self.name_en, "lon": self.lon,
                "lat": self.lat, "radius_m": self.radius_m}

    @classmethod
    def of(cls, value: object) -> CasePlace:
        """A checked place from a `CasePlace` or its `as_dict`; CaseError ``bad_request`` names the problem."""
        if isinstance(value, CasePlace):
            value = value.as_dict()
        if not isinstance(value, dict):
            raise _bad("place must be a mapping with key, name_zh, name_en, lon, lat, radius_m")
        lon, lat = _finite("place.lon", value.get("lon")), _finite("place.lat", value.get("lat"))
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise _bad(f"place lon/lat out of range: {lon}, {lat}")
        radius = _finite("place.radius_m", value.get("radius_m", 50.0))
        if radius <= 0:
            raise _bad(f"place.radius_m must be > 0 m, got {radius}")
        names = (_text(f"place.{k}", value.get(k), MAX_NAME) for k in ("key", "name_zh", "name_en"))
        return cls(*names, lon, lat, radius)


@dataclass(frozen=True)
class CaseEvent:
    """One event of a case: the ``n``-th (0-based), ``kind`` one of `EVENT_KINDS`, at twin time ``t`` [unix s], by
    ``actor`` (an operator, a unit id, a report source, ``twin``, ``sensors``, ``beidou``), ``reason`` why, ``data``
    kind-specific plain values."""

    case: str
    n: int
    kind: str
    t: float
    actor: str
    reason: str = ""
    data: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The event's unique key in the store: ``{case}#{n}``."""
        return f"{self.case}#{self.n}"

    def to_row(self) -> dict:
        """Plain values: key, case, n, kind, t, actor, reason, data (what `twin.alerting.store.Store` stores)."""
        return {"key": self.key, "case": self.case, "n": self.n, "kind": self.kind, "t": self.t,
                "actor": self.actor, "reason": self.reason, "data": dict(self.data)}

    @classmethod
    def from_row(cls, row: dict) -> CaseEvent:
        """Take back `to_row` (or a store row, whose case is ``case_id`` and data a dict or its JSON)."""
        data = row.get("data") or {}
        if isinstance(data, str):
            data = json.loads(data)
        case = row["case"] if "case" in row else row["case_id"]
        return cls(str(case), int(row["n"]), str(row["kind"]), float(row["t"]), str(row["actor"]),
                   str(row.get("reason") or ""), dict(data))


@dataclass(frozen=True)
class Case:
    """A case's state after its events (see the module docstring). Times are twin time [unix s].

    ``reached``: status -> first time reached in the current round; ``escalated``: steps escalated in the current
    round; ``alerts``/``reports``: linked alert and report ids, in link order; ``attachments``: URLs.
    """

    id: str
    district: str
    category: str
    priority: int
    place: CasePlace
    source: str
    verify: str
    status: str
    assignee: str
    alerts: tuple[str, ...]
    reports: tuple[str, ...]
    attachments: tuple[str, ...]
    opened_at: float
    updated_at: float
    reached: dict[str, float]
    escalated: frozenset[str]
    events: tuple[CaseEvent, ...]

    @property
    def is_open(self) -> bool:
        """Neither closed nor cancelled."""
        return self.status in OPEN_STATUSES

    def as_dict(self, events: bool = False) -> dict:
        """JSON-safe plain values for the API and ``city/cases/{id}`` (no personal data: reports are ids); with
        ``events`` also ``history``, the events as `CaseEvent.to_row` without ``key``."""
        out = {"id": self.id, "district": self.district, "category": self.category, "priority": self.priority,
               "place": self.place.as_dict(), "source": self.source, "verify": self.verify, "status": self.status,
               "open": self.is_open, "assignee": self.assignee, "alerts": list(self.alerts),
               "reports": list(self.reports), "attachments": list(self.attachments), "opened_at": self.opened_at,
               "updated_at": self.updated_at, "reached": dict(self.reached), "escalated": sorted(self.escalated),
               "n_events": len(self.events)}
        if events:
            out["history"] = [{k: v for k, v in e.to_row().items() if k != "key"} for e in self.events]
        return out


# ---------------------------------------------------------------- checking an event
def _check_data(event: CaseEvent) -> None:
    if not isinstance(event.data, dict) or not all(isinstance(k, str) for k in event.data):
        raise _bad("data must be a mapping with string keys")
    try:
        json.dumps(event.data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _bad(f"data must be plain JSON values: {exc}") from None


def _check_event(event: CaseEvent) -> None:
    if not isinstance(event, CaseEvent):
        raise _bad(f"not a case event: {type(event).__name__}")
    _text("case id", event.case, MAX_NAME)
    if event.kind not in EVENT_KINDS:
        raise _bad(f"unknown event kind {event.kind!r}; kinds: {', '.join(EVENT_KINDS)}")
    _finite("t", event.t)
    _text("actor", event.actor, MAX_ACTOR)
    _text("reason", event.reason, MAX_REASON, empty=event.kind != "noted")
    _check_data(event)


def _opened(event: CaseEvent) -> Case:
    d = event.data
    category = _text("category", d.get("category"), 40)
    if not CODE_RE.match(category):
        raise _bad(f"category must be a code like 'waterlogging' (a-z, 0-9, _), got {category!r}")
    if d.get("source") not in SOURCES:
        raise _bad(f"source must be one of {', '.join(SOURCES)}, got {d.get('source')!r}")
    verify = d.get("verify", "manual")
    if verify not in VERIFY_MODES:
        raise _bad(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
    district = _text("district", d.get("district"), MAX_NAME)
    return Case(event.case, district, category, _priority(d.get("priority")), CasePlace.of(d.get("place")),
                d["source"], verify, "new", "", (), (), (), event.t, event.t, {"new": event.t}, frozenset(),
                (event,))


# ---------------------------------------------------------------- the fold
def next_case(case: Case | None, event: CaseEvent) -> Case:
    """The case after one more event (``case`` None for the ``opened`` event); CaseError if it is not allowed."""
    _check_event(event)
    if case is None:
        if event.kind != "opened" or event.n != 0:
            raise CaseError("unknown_case", f"case {event.case} has no opened event; got {event.kind} #{event.n}")
        return _opened(event)
    if event.case != case.id:
        raise _bad(f"event of case {event.case} applied to case {case.id}")
    if event.n != len(case.events):
        raise _bad(f"event #{event.n} of case {case.id} out of order: the next is #{len(case.events)}")
    if event.kind == "opened":
        raise CaseError("bad_transition", f"case {case.id} is already open")
    changed = _transition(case, event) if event.kind in TRANSITIONS else _note(case, event)
    return replace(changed, updated_at=max(case.updated_at, event.t), events=(*case.events, event))


def fold(events: Iterable[CaseEvent]) -> Case:
    """The case its events make, in order (CaseError on the first event that is not allowed)."""
    case = None
    for event in events:
        case = next_case(case, event)
    if case is None:
        raise CaseError("unknown_case", "a case needs at least its opened event")
    return case


def _transition(case: Case, event: CaseEvent) -> Case:
    kind = event.kind
    if case.status not in TRANSITIONS[kind]:
        allowed = ", ".join(s for s in STATUSES if s in TRANSITIONS[kind])
        raise CaseError("bad_transition", f"case {case.id} is {case.status}: {kind} is allowed only from {allowed}")
    if kind in UNIT_ANSWERS and "unit" in event.data and event.data["unit"] != case.assignee:
        raise CaseError("not_assigned", f"unit {event.data['unit']!r} is not assigned to case {case.id} "
                                        f"(assignee: {case.assignee or 'none'})")
    status = STATUS_AFTER[kind]
    if kind == "dispatched":
        unit = _text("data.unit", event.data.get("unit"), MAX_ACTOR)
        if case.assignee and unit != case.assignee:  # reassigned: the new unit's steps are timed from now
            case = _unassigned(case)
        return replace(case, status=status, assignee=unit, reached=_reach(case.reached, status, event.t))
    if kind == "reopened":
        return replace(case, status=status, assignee="", reached={"new": event.t}, escalated=frozenset())
    if kind == "declined":
        return replace(_unassigned(case), status=status, assignee="")
    return replace(case, status=status, reached=_reach(case.reached, status, event.t))


def _unassigned(case: Case) -> Case:
    """The case without its assignment: `ASSIGNMENT_STATUSES` forgotten from ``reached``, `ASSIGNMENT_STEPS` from
    ``escalated`` (a declined or reassigned case times and escalates the next unit's steps afresh)."""
    return replace(case, reached={s: v for s, v in case.reached.items() if s not in ASSIGNMENT_STATUSES},
                   escalated=case.escalated - ASSIGNMENT_STEPS)


def _reach(reached: dict[str, float], status: str, t: float) -> dict[str, float]:
    return reached if status in reached else {**reached, status: t}


def _note(case: Case, event: CaseEvent) -> Case:
    kind, d = event.kind, event.data
    if not case.is_open and kind not in FINAL_KINDS:
        raise CaseError("bad_transition", f"case {case.id} is {case.status}: it takes only noted and attached")
    if kind == "linked":
        return _linked(case, d)
    if kind == "escalated":
        if d.get("step") not in STEPS:
            raise _bad(f"escalated needs data.step, one of {', '.join(STEPS)}; got {d.get('step')!r}")
        _finite("data.deadline", d.get("deadline"))
        return replace(case, escalated=case.escalated | {d["step"]})
    if kind == "attached":
        url = check_url(d.get("url"))
        return case if url in case.attachments else replace(case, attachments=(*case.attachments, url))
    if kind == "prioritised":
        return replace(case, priority=_priority(d.get("priority")))
    return case  # noted: the reason is the note


def _linked(case: Case, d: dict) -> Case:
    which = [k for k in ("alert", "report") if k in d]
    if len(which) != 1:
        raise _bad("linked needs exactly one of data.alert or data.report")
    ref = _text(f"data.{which[0]}", d[which[0]], MAX_NAME)
    if which[0] == "alert":
        return case if ref in case.alerts else replace(case, alerts=(*case.alerts, ref))
    return case if ref in case.reports else replace(case, reports=(*case.reports, ref))
