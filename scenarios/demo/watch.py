"""What the demo shows and sums up, read from the outside: the MQTT topics of the contract (docs/contract/mqtt.md 3.1).

`Tally` is pure (topic and payload in, counts out), so it can be tested without a broker; `Watcher`
feeds it from a paho client subscribed to the alert, unit, case, escalation, dead-letter and status topics.

An alert is the one its topic ``city/alerts/{id}`` names, whatever the message identifier (``{id}``,
``{id}.update{n}``, ``{id}.ack{k}``, ``{id}.cancel{n}``), and a Cancel is final: a message of a cancelled alert
that arrives later (an operator's acknowledgement Update redelivered at QoS 1, which is at least once) does not
make it active again, so the demo can report "all clear".

A case is what its retained state on ``city/cases/{id}`` says (the twin publishes the whole state after every event;
docs/guides/cases.md): the tally keeps the newest state of each (by ``n_events``, so a late older state changes
nothing) and logs the statuses of note the case has newly reached (``reached``: status -> twin time), the reports
linked to it and a reopening; ``city/supervisor/escalations`` are counted by step and logged. A retained case state
the broker hands over on subscribing, of a case not seen yet, is an earlier run's on the same broker (the watcher
subscribes before the twin starts; brokers clear the retain flag of messages they forward live) and is left out
(``stale``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import statistics
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from models.hazards import ALERT_HAZARDS
from scenarios.feeds.mqtt import paho_client
from twin.alerting.cap import info_block

log = logging.getLogger(__name__)

_SUFFIX = re.compile(r"\.(update|cancel|ack)\d+$")
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
KINDS = {"Alert": "raised", "Update": "updated", "Cancel": "cancelled"}
CASE_NOTES = {"new": "opened", "dispatched": "dispatched", "on_scene": "on scene", "disposed": "disposed",
              "verified": "verified", "closed": "closed", "cancelled": "cancelled"}
"""Case statuses of note, and the word the console logs when a case reaches one."""
CLOSED = "closed"


def alert_root(identifier: str) -> str:
    """The identifier of the alert a CAP message belongs to (``….update3``, ``….ack1`` -> ``…``)."""
    return _SUFFIX.sub("", identifier)


def cap_seconds(text: str) -> float:
    """A CAP dateTime (``2025-12-31T22:10:00+08:00``) as unix seconds."""
    return dt.datetime.fromisoformat(text).timestamp()


def _english(cap: dict) -> dict:
    """The message's en-US info block (parameters are the same in every block), {} if it has none."""
    return info_block(cap, "en-US") if cap.get("info") else {}


def _headlines(cap: dict) -> str:
    """``{zh-CN headline} / {en-US headline}`` (they name the place), else the area's description."""
    if not cap.get("info"):
        return ""
    zh, en = info_block(cap, "zh-CN"), _english(cap)
    texts = [h for h in dict.fromkeys((zh.get("headline"), en.get("headline"))) if h]
    return " / ".join(texts) or (en.get("area") or [{}])[0].get("areaDesc", "")


def _params(cap: dict) -> dict[str, str]:
    return {p.get("valueName", ""): p.get("value", "") for p in _english(cap).get("parameter") or []}


@dataclass
class Tally:
    """Counts of what crossed the broker, by topic family."""

    prefix: str = "city/"
    alerts: Counter = field(default_factory=Counter)
    """(hazard, kind) -> CAP messages, kind raised / updated / cancelled."""
    active: dict[str, str] = field(default_factory=dict)
    """Active alert identifier -> hazard."""
    cancelled: set = field(default_factory=set)
    """Alerts whose Cancel was seen: a later message of theirs is a late or repeated one, not a new state."""
    levels: dict[str, str] = field(default_factory=dict)
    """Alert identifier -> its last warning colour."""
    hazard_of: dict[str, str] = field(default_factory=dict)
    """Alert identifier -> hazard, for every alert seen."""
    delivered: dict[tuple[str, str], float] = field(default_factory=dict)
    """(unit, alert) -> CAP ``sent`` of the first message the unit got for it [unix s]."""
    acks: Counter = field(default_factory=Counter)
    acked: set = field(default_factory=set)
    """(unit, alert) pairs the unit acknowledged."""
    arrivals: dict[tuple[str, str], float] = field(default_factory=dict)
    """(unit, alert) -> seconds from the alert reaching the unit to its ``on_scene`` [s]."""
    deadletters: Counter = field(default_factory=Counter)
    status: dict[str, Any] = field(default_factory=dict)
    events: deque = field(default_factory=lambda: deque(maxlen=200))
    """Recent lines worth showing: (twin time [unix s], text)."""
    bad: int = 0
    """Messages on watched topics that could not be read."""
    cases: dict[str, dict] = field(default_factory=dict)
    """Case id -> its newest state (``city/cases/{id}``)."""
    escalations: Counter = field(default_factory=Counter)
    """Escalations seen, by step."""
    logged: int = 0
    """Lines ever added to ``events`` (the console shows those it has not shown yet)."""
    stale: int = 0
    """Retained case states of cases not seen live, left out (see the module docstring)."""

    def log(self, t: float, text: str) -> None:
        """Add a line worth showing, at twin time ``t`` [unix s]."""
        self.events.append((t, text))
        self.logged += 1

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Take one message from the broker (``retained``: it came with the retain flag, when subscribing)."""
        if not topic.startswith(self.prefix) or not payload:
            return  # not ours, or a retained message being removed
        parts = topic[len(self.prefix):].split("/")
        try:
            doc = json.loads(payload)
            if parts[0] == "alerts" and len(parts) == 2:
                self._alert(parts[1], doc)
            elif parts[0] == "units" and len(parts) == 3 and parts[2] == "alerts":
                self._delivery(parts[1], doc)
            elif parts[0] == "units" and len(parts) == 3 and parts[2] == "ack":
                self._ack(parts[1], doc)
            elif parts[0] == "cases" and len(parts) == 2:
                if retained and parts[1] not in self.cases:
                    self.stale += 1
                else:
                    self._case(parts[1], doc)
            elif parts == ["supervisor", "escalations"]:
                self._escalation(doc)
            elif parts == ["deadletter"]:
                self.deadletters[str(doc.get("reason", "unknown"))] += 1
            elif parts == ["twin", "status"]:
                self.status = doc
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            self.bad += 1
            log.debug("cannot read %s: %s", topic, exc)

    def _alert(self, root: str, cap: dict) -> None:
        """A message on ``alerts/{root}``: the topic names the alert, not the message's identifier suffix."""
        params = _params(cap)
        hazard, kind = params.get("hazard", "?"), KINDS.get(cap.get("msgType", ""), "?")
        if root in self.cancelled:
            log.debug("late %s of cancelled alert %s ignored", cap.get("identifier"), root)
            return
        self.alerts[hazard, kind] += 1
        self.hazard_of[root] = hazard
        level = params.get("warningLevel", "")
        if kind == "cancelled":
            self.active.pop(root, None)
            self.cancelled.add(root)
            changed = True
        else:
            self.active[root] = hazard
            changed = self.levels.get(root) != level
            self.levels[root] = level
        if changed:  # raised, cancelled, or a change of colour
            evidence = next((v for k, v in params.items() if k.startswith(("peak", "min"))), "")
            where = _headlines(cap)
            self.log(cap_seconds(cap["sent"]), f"{kind:9s} {hazard:7s} {level:6s} {evidence:>14s}  {where}")

    def _delivery(self, unit: str, cap: dict) -> None:
        if cap.get("msgType") == "Cancel":
            return
        key = (unit, alert_root(cap["identifier"]))
        if key not in self.delivered:
            self.delivered[key] = cap_seconds(cap["sent"])

    def _ack(self, unit: str, doc: dict) -> None:
        status, key = str(doc["status"]), (unit, alert_root(str(doc["alert"])))
        self.acks[status] += 1
        if status == "ack":
            self.acked.add(key)
        elif status == "on_scene" and key in self.delivered and key not in self.arrivals:
            self.arrivals[key] = float(doc["t"]) - self.delivered[key]
            self.log(float(doc["t"]), f"on scene  {unit} after {self.arrivals[key] / 60:.1f} min")

    def _case(self, case_id: str, doc: dict) -> None:
        """A case's retained state: log what it newly reached, keep the newest state."""
        old = self.cases.get(case_id)
        if old is not None and int(doc["n_events"]) <= int(old["n_events"]):
            return  # the same state again, or an older one late
        reached = {k: float(v) for k, v in (doc.get("reached") or {}).items()}
        before = {k: float(v) for k, v in ((old or {}).get("reached") or {}).items()}
        t = float(doc["updated_at"])
        if _reopened(before, reached):
            self.log(t, case_line(doc, "reopened"))
            before = {}
        for status, at in sorted(reached.items(), key=lambda kv: kv[1]):
            if status in CASE_NOTES and status not in before:
                self.log(at, case_line(doc, CASE_NOTES[status]))
        for report in doc.get("reports") or []:
            if report not in ((old or {}).get("reports") or []):
                self.log(t, case_line(doc, "linked", f"report {report}"))
        self.cases[case_id] = doc

    def _escalation(self, doc: dict) -> None:
        """A step overdue: ``escalated {step} {case} {place}  due HH:MM, unit …`` (the texts are the dashboard's)."""
        step = str(doc["step"])
        self.escalations[step] += 1
        place = doc.get("place") or {}
        names = " / ".join(n for n in (place.get("name_zh"), place.get("name_en")) if n)
        due = dt.datetime.fromtimestamp(float(doc["deadline"]), SHANGHAI).strftime("%H:%M")
        who = f"unit {doc['assignee']}" if doc.get("assignee") else "no unit yet"
        self.log(float(doc["t"]), f"escalated {step:9s} {doc['case']} {names}  due {due}, {who}")

    # ------------------------------------------------------------ views
    def counts(self, hazard: str) -> dict[str, int]:
        """raised / updated / cancelled CAP messages of ``hazard``."""
        return {k: self.alerts[hazard, k] for k in ("raised", "updated", "cancelled")}

    def hazards(self) -> list[str]:
        """Hazards with any alert, in a fixed order."""
        seen = {h for h, _ in self.alerts}
        return [h for h in ALERT_HAZARDS if h in seen] + sorted(seen - set(ALERT_HAZARDS))

    def acked_by_hazard(self) -> dict[str, int]:
        """(unit, alert) acknowledgements by the alert's hazard."""
        out: Counter = Counter(self.hazard_of.get(alert, "?") for _, alert in self.acked)
        return dict(sorted(out.items()))

    def case_counts(self) -> dict[str, int]:
        """Cases seen: ``opened`` (all), ``closed``, ``cancelled`` and ``open`` (neither)."""
        status = Counter(str(c["status"]) for c in self.cases.values())
        closed, cancelled = status[CLOSED], status["cancelled"]
        return {"opened": len(self.cases), "closed": closed, "cancelled": cancelled,
                "open": len(self.cases) - closed - cancelled}

    def open_cases(self) -> list[str]:
        """Ids of the cases seen that are neither closed nor cancelled."""
        return [k for k, c in self.cases.items() if c["status"] not in (CLOSED, "cancelled")]

    def reports(self) -> dict[str, dict]:
        """Report id -> the state of the case it is linked to."""
        return {r: c for c in self.cases.values() for r in c.get("reports") or []}

    def ledger_line(self) -> str:
        """``ledger: N opened, M closed, K open`` (and the cancelled ones, if any), from the cases seen."""
        c = self.case_counts()
        cancelled = f" ({c['cancelled']} cancelled)" if c["cancelled"] else ""
        return f"ledger: {c['opened']} opened, {c['closed']} closed, {c['open']} open{cancelled}"

    def arrival_minutes(self) -> tuple[float, float] | None:
        """Median and maximum time to arrival [min], or None before any arrival."""
        if not self.arrivals:
            return None
        values = list(self.arrivals.values())
        return statistics.median(values) / 60.0, max(values) / 60.0


def _reopened(before: dict[str, float], reached: dict[str, float]) -> bool:
    """Whether a case's ``reached`` has started a new round (a reopening clears it) since ``before``."""
    return bool(before) and (not before.keys() <= reached.keys()
                             or any(reached[k] != v for k, v in before.items() if k in reached))


def case_line(doc: dict, what: str, extra: str = "") -> str:
    """One console line of a case event: what happened, the case, its category, place (Chinese / English) and
    unit."""
    place = doc.get("place") or {}
    unit = f"  unit {doc['assignee']}" if doc.get("assignee") and what not in ("opened", "verified", "closed") else ""
    names = " / ".join(n for n in (place.get("name_zh"), place.get("name_en")) if n)
    more = f"  {extra}" if extra else ""
    return f"case {what:10s} {doc['id']} {doc.get('category', '?'):12s} {names}{unit}{more}"


class Watcher:
    """A paho client feeding a `Tally` from the broker (QoS 1, its own clean session)."""

    def __init__(self, url: str, *, protocol: str = "5", prefix: str = "city/", client_id: str = "") -> None:
        self.tally, self.lock = Tally(prefix), threading.Lock()
        self.client, self.url = paho_client(url, protocol=protocol, username="demo-watch",
                                            client_id=client_id or f"twin-demo-watch-{id(self):x}")
        self._subscribed = threading.Event()
        self.topics = [f"{prefix}alerts/+", f"{prefix}units/+/alerts", f"{prefix}units/+/ack",
                       f"{prefix}cases/#", f"{prefix}supervisor/escalations", f"{prefix}deadletter",
                       f"{prefix}twin/status"]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.tally.on_message(msg.topic, bytes(msg.payload), bool(msg.retain))

    def start(self, timeout_s: float = 10.0) -> Watcher:
        """Connect and subscribe; ``ConnectionError`` if the broker does not answer in time."""
        try:
            self.client.connect(self.url.host, self.url.port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {self.url.host}:{self.url.port}: {exc}") from exc
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise ConnectionError(f"broker {self.url.host}:{self.url.port} did not accept the subscription")
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
