"""Storm control (告警风暴控制): at most N new alerts a minute go out one by one; the rest form one summary per hazard.

An alert storm is what users of ThingsBoard and Alertmanager complain of most: a heavy shower raises dozens of
alerts in a few minutes and every unit's terminal rings for each. `StormControl` keeps a budget per district:

- every tick the core passes the alerts raised this tick that would go out (not silenced, not inhibited);
  the worst first (level, then value, then identifier), each is delivered on its own while fewer than
  ``max_new_per_min`` alerts went out in the last ``window_s`` seconds, and *held* otherwise;
- held alerts of one hazard are grouped into ONE summary (`StormSummary`): its count, its worst level and its
  worst places (the top `TOP_PLACES` by level, then value); the core publishes it as its own CAP alert to the units
  and tells the operator (`StormDecision.notices`). A held alert is still recorded and published on
  ``city/alerts/{id}``, not to units, and its later messages are held too while it is in the storm (`holding`);
- the storm ends when at most ``max_new_per_min`` new alerts were raised in every trailing window for ``window_s``
  seconds: the summaries are cleared (the core publishes their Cancel) and the members still active are *released*,
  worst first, within the same budget (the core then delivers their current message to units).

[design: the per-minute budget is a token bucket of one window, as rate limits of notification systems are; ranking
by level then value puts the red, deepest places first, which is what a duty officer reads first.]

Deterministic (no wall clock, stable ordering); `save_state`/`restore_state` carry it across restarts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from models.hazards import REGISTRY
from twin.alerting.labels import LEVEL_NAMES, AlertLabels

TOP_PLACES = 5
"""Worst places named in a summary."""
SHANGHAI_TZ = dt.timezone(dt.timedelta(hours=8))
HAZARD_EN = {"flood": "waterlogging", "crowd": "crowd density", "crowd_forecast": "crowd density forecast",
             "traffic": "traffic congestion", "rain": "rainstorm", "river": "high river level"}
HAZARD_ZH = {"flood": "积水", "crowd": "人群密度", "crowd_forecast": "人群密度预测", "traffic": "交通拥堵",
             "rain": "暴雨", "river": "高水位"}
LEVEL_ZH = {0: "无", 1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色"}


@dataclass(frozen=True)
class Member:
    """A held alert as the summary shows it."""

    identifier: str
    level: int
    value: float
    place: str
    place_name: str
    place_name_zh: str

    @classmethod
    def of(cls, labels: AlertLabels) -> Member:
        return cls(labels.identifier, int(labels.level), float(labels.value), labels.place,
                   labels.place_name or labels.place or labels.identifier,
                   labels.place_name_zh or labels.place_name or labels.place or labels.identifier)

    def to_state(self) -> dict:
        return {"identifier": self.identifier, "level": self.level,
                "value": None if math.isnan(self.value) else self.value, "place": self.place,
                "place_name": self.place_name, "place_name_zh": self.place_name_zh}

    @classmethod
    def of_state(cls, s: dict) -> Member:
        return cls(s["identifier"], int(s["level"]), math.nan if s["value"] is None else float(s["value"]),
                   s["place"], s["place_name"], s["place_name_zh"])


def severity_key(hazard: str, level: int, value: float, identifier: str) -> tuple:
    """Sort key, worst first: higher level, then the worse value (larger depth or density, lower speed; unknown
    last), then identifier."""
    worst = REGISTRY[hazard].worst if hazard in REGISTRY else "max"
    v = math.inf if math.isnan(value) else (-value if worst == "max" else value)
    return (-int(level), v, identifier)


def _fmt(value: float, hazard: str) -> str:
    if math.isnan(value):
        return ""
    unit = REGISTRY[hazard].unit if hazard in REGISTRY else ""
    return f"{value:.2f} {unit}".strip()


@dataclass(frozen=True)
class StormSummary:
    """The plain fields of one hazard's storm summary; the core composes its CAP message from them.

    ``kind``: raised (first message), updated (its members changed) or cleared (the storm is over: a Cancel).
    ``worst``: the top places, dicts identifier, level, level_name, value, place, place_name, place_name_zh.
    """

    identifier: str
    hazard: str
    kind: str
    level: int
    count: int
    member_ids: tuple[str, ...]
    worst: tuple[dict, ...]
    started_at: float
    headline_en: str
    headline_zh: str
    description_en: str
    description_zh: str


def summary_fields(hazard: str, members: Iterable[Member], district: str, started_at: float, max_new: int,
                   window_s: float) -> dict:
    """Headlines and descriptions (English and Chinese), level, count, member ids and worst places of a storm
    summary of ``members`` (held alerts of one hazard)."""
    ranked = sorted(members, key=lambda m: severity_key(hazard, m.level, m.value, m.identifier))
    top = ranked[:TOP_PLACES]
    level = max((m.level for m in ranked), default=0)
    count, since = len(ranked), dt.datetime.fromtimestamp(started_at, SHANGHAI_TZ).strftime("%H:%M")
    en, zh = HAZARD_EN.get(hazard, hazard), HAZARD_ZH.get(hazard, hazard)
    where_en, where_zh = (f" in {district}" if district else ""), (f"{district} " if district else "")
    worst_en = f", worst {LEVEL_NAMES[top[0].level]} at {top[0].place_name}" if top else ""
    worst_zh = f"，最严重：{top[0].place_name_zh}（{LEVEL_ZH[top[0].level]}）" if top else ""
    places_en = "; ".join(f"{k + 1}. {m.place_name} ({LEVEL_NAMES[m.level]}"
                          + (f", {_fmt(m.value, hazard)}" if _fmt(m.value, hazard) else "") + ")"
                          for k, m in enumerate(top))
    places_zh = "；".join(f"{k + 1}. {m.place_name_zh}（{LEVEL_ZH[m.level]}"
                          + (f"，{_fmt(m.value, hazard)}" if _fmt(m.value, hazard) else "") + "）"
                          for k, m in enumerate(top))
    return {
        "hazard": hazard, "level": level, "count": count, "member_ids": tuple(m.identifier for m in ranked),
        "worst": tuple({"identifier": m.identifier, "level": m.level, "level_name": LEVEL_NAMES[m.level],
                        "value": None if math.isnan(m.value) else m.value, "place": m.place,
                        "place_name": m.place_name, "place_name_zh": m.place_name_zh} for m in top),
        "headline_en": f"Alert storm: {count} {en} warnings{where_en}{worst_en}",
        "headline_zh": f"告警风暴：{where_zh}{count}条{zh}预警{worst_zh}",
        "description_en": (f"{count} {en} warnings raised since {since} are grouped in this summary instead of being "
                           f"sent one by one (more than {max_new} new alerts in {window_s:.0f} s). Worst places: "
                           f"{places_en}. Every alert is on the dashboard."),
        "description_zh": (f"自{since}起的{count}条{zh}预警合并为本条汇总，不逐条发送（{window_s:.0f}秒内新增预警超过"
                           f"{max_new}条）。最严重的地点：{places_zh}。全部预警见大屏。"),
    }


@dataclass
class StormDecision:
    """What storm control decided at one tick (see the module docstring).

    ``deliver``: new alerts to deliver to units now; ``held``: new alerts held, id -> its summary's identifier;
    ``released``: alerts held earlier to deliver to units now (their current message); ``summaries``: summaries
    raised, updated or cleared this tick; ``notices``: sentences for the operator.
    """

    deliver: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    summaries: list[StormSummary] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


@dataclass
class _Storm:
    identifier: str
    started_at: float
    members: dict[str, Member] = field(default_factory=dict)
    shown: tuple = ()
    """What the last summary message showed (ids, level, top places and levels); a change makes an update."""


class StormControl:
    """Storm control of one district (see the module docstring).

    Parameters
    ----------
    max_new_per_min : int
        New alerts delivered one by one per window; more are held in a storm.
    window_s : float
        The window [s] (60: per minute).
    district : str
        The district's short name, for summary identifiers and texts.
    """

    def __init__(self, max_new_per_min: int = 10, window_s: float = 60.0, district: str = "") -> None:
        if not (isinstance(max_new_per_min, int) and max_new_per_min >= 1):
            raise ValueError(f"StormControl: max_new_per_min must be an integer >= 1, got {max_new_per_min!r}")
        if not (window_s > 0 and math.isfinite(window_s)):
            raise ValueError(f"StormControl: window_s must be a positive number of seconds, got {window_s!r}")
        self.max_new, self.window_s, self.district = max_new_per_min, float(window_s), district
        self.sent: deque[float] = deque()
        """Times of the alerts delivered one by one (new or released) within the window."""
        self.raised: deque[float] = deque()
        """Times of the new alerts that would have gone out within the window."""
        self.storms: dict[str, _Storm] = {}
        self.calm_since: float | None = None
        self.release_queue: list[Member] = []
        self.release_hazard: dict[str, str] = {}
        self.sequence = 0

    # ------------------------------------------------------------ queries
    @property
    def in_storm(self) -> bool:
        """Whether a storm is on."""
        return bool(self.storms)

    def holding(self, identifier: str) -> str | None:
        """The summary identifier an alert is held in (its messages go to ``city/alerts/{id}`` only), else None."""
        for storm in self.storms.values():
            if identifier in storm.members:
                return storm.identifier
        return None

    # ------------------------------------------------------------ the tick
    def tick(self, t: float, raised: list[AlertLabels], active: Iterable[AlertLabels] | None = None) -> StormDecision:
        """Decide at twin time ``t`` [unix s] on the alerts raised this tick that would go out (``raised``); with
        ``active`` (the labels of every active alert), held members are refreshed and those no longer active leave
        their storm."""
        decision = StormDecision()
        self._prune(t)
        if active is not None:
            self._refresh({a.identifier: a for a in active})
        changed: set[str] = set(self.storms)
        for labels in sorted(raised, key=lambda a: severity_key(a.hazard, a.level, a.value, a.identifier)):
            self.raised.append(t)
            if len(self.sent) < self.max_new:
                self.sent.append(t)
                decision.deliver.append(labels.identifier)
            else:
                decision.held[labels.identifier] = self._hold(t, labels, decision)
                changed.add(labels.hazard)
        self._calm(t, decision)
        self._release(t, decision)
        for hazard in sorted(changed & set(self.storms)):
            self._summarise(hazard, decision)
        return decision

    def _prune(self, t: float) -> None:
        for times in (self.sent, self.raised):
            while times and times[0] <= t - self.window_s:
                times.popleft()

    def _refresh(self, active: dict[str, AlertLabels]) -> None:
        for hazard in list(self.storms):
            storm = self.storms[hazard]
            storm.members = {i: Member.of(active[i]) for i in storm.members if i in active}
        self.release_queue = [m for m in self.release_queue if m.identifier in active]

    def _hold(self, t: float, labels: AlertLabels, decision: StormDecision) -> str:
        storm = self.storms.get(labels.hazard)
        if storm is None:
            self.sequence += 1
            stamp = dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            ident = f"citytwin.{self.district or 'district'}.storm-{labels.hazard}.{stamp}.{self.sequence:05d}"
            storm = self.storms[labels.hazard] = _Storm(ident, t)
            decision.notices.append(
                f"Alert storm{' in ' + self.district if self.district else ''}: {len(self.raised)} new alerts in "
                f"{self.window_s:.0f} s (limit {self.max_new}); further {labels.hazard} alerts are held back and "
                f"grouped in the summary {ident}")
        storm.members[labels.identifier] = Member.of(labels)
        return storm.identifier

    def _calm(self, t: float, decision: StormDecision) -> None:
        """End the storms once the raise rate stayed at or below the limit for a whole window."""
        if len(self.raised) > self.max_new:
            self.calm_since = None
            return
        if self.calm_since is None:
            self.calm_since = t
        if not self.storms or t - self.calm_since < self.window_s:
            return
        released = 0
        for hazard in sorted(self.storms):
            storm = self.storms.pop(hazard)
            decision.summaries.append(self._summary(hazard, storm, "cleared"))
            for m in storm.members.values():
                self.release_queue.append(m)
                self.release_hazard[m.identifier] = hazard
                released += 1
        self.release_queue.sort(key=lambda m: severity_key(self.release_hazard[m.identifier], m.level, m.value,
                                                           m.identifier))
        decision.notices.append(f"Alert storm{' in ' + self.district if self.district else ''} over: at most "
                                f"{self.max_new} new alerts a {self.window_s:.0f} s for {self.window_s:.0f} s; the "
                                f"summaries are cleared and {released} held alerts still active are sent one by one")

    def _release(self, t: float, decision: StormDecision) -> None:
        while self.release_queue and len(self.sent) < self.max_new:
            m = self.release_queue.pop(0)
            self.release_hazard.pop(m.identifier, None)
            self.sent.append(t)
            decision.released.append(m.identifier)

    def _summary(self, hazard: str, storm: _Storm, kind: str) -> StormSummary:
        f = summary_fields(hazard, storm.members.values(), self.district, storm.started_at, self.max_new,
                           self.window_s)
        return StormSummary(storm.identifier, hazard, kind, f["level"], f["count"], f["member_ids"], f["worst"],
                            storm.started_at, f["headline_en"], f["headline_zh"], f["description_en"],
                            f["description_zh"])

    def _summarise(self, hazard: str, decision: StormDecision) -> None:
        """A raised or updated summary when what it shows changed; an empty storm (its members all ended) is
        cleared."""
        storm = self.storms[hazard]
        if not storm.members:
            del self.storms[hazard]
            if storm.shown:
                decision.summaries.append(self._summary(hazard, storm, "cleared"))
            return
        summary = self._summary(hazard, storm, "raised" if not storm.shown else "updated")
        shown = (summary.member_ids, summary.level, tuple((w["identifier"], w["level"]) for w in summary.worst))
        if shown != storm.shown:
            storm.shown = shown
            decision.summaries.append(summary)

    # ------------------------------------------------------------ snapshots
    def save_state(self) -> dict:
        """Plain values of what evolves."""
        return {"sent": list(self.sent), "raised": list(self.raised), "calm_since": self.calm_since,
                "sequence": self.sequence,
                "storms": {h: {"identifier": s.identifier, "started_at": s.started_at,
                               "members": [m.to_state() for m in s.members.values()],
                               "shown": [list(s.shown[0]), s.shown[1], [list(w) for w in s.shown[2]]]
                               if s.shown else None}
                           for h, s in self.storms.items()},
                "release_queue": [{**m.to_state(), "hazard": self.release_hazard[m.identifier]}
                                  for m in self.release_queue]}

    def restore_state(self, state: dict) -> None:
        """Take back `save_state` (on a fresh StormControl)."""
        self.sent, self.raised = deque(map(float, state["sent"])), deque(map(float, state["raised"]))
        self.calm_since = None if state["calm_since"] is None else float(state["calm_since"])
        self.sequence = int(state["sequence"])
        self.storms = {}
        for hazard, s in state["storms"].items():
            shown = s["shown"]
            storm = _Storm(s["identifier"], float(s["started_at"]),
                           {m["identifier"]: Member.of_state(m) for m in s["members"]},
                           (tuple(shown[0]), int(shown[1]), tuple(tuple(w) for w in shown[2])) if shown else ())
            self.storms[hazard] = storm
        self.release_queue = [Member.of_state(m) for m in state["release_queue"]]
        self.release_hazard = {m["identifier"]: m["hazard"] for m in state["release_queue"]}


# ---------------------------------------------------------------- the three together
@dataclass
class DeliveryPlan:
    """What goes to units at one tick, after inhibition, silences and storm control (`DeliveryControl.tick`).

    ``suppressed``: per active alert that is not delivered to units, ``{"by": "inhibition" | "silence" | "storm",
    "id": <source alert, silence or summary id>, "reason": <sentence>}`` (`twin.live.query.LiveQuery.alert_live`'s
    ``suppressed``); ``send_current``: alerts whose *current* message goes to units now although they may have no
    event this tick (their suppression was lifted, or they were released after a storm); ``storm``: the storm
    decision (summaries to publish, notices for the operator).
    """

    suppressed: dict[str, dict] = field(default_factory=dict)
    send_current: list[str] = field(default_factory=list)
    storm: StormDecision = field(default_factory=StormDecision)

    def to_units(self, identifier: str, kind: str) -> bool:
        """Whether an event (``kind`` raised / updated / acknowledged / cancelled) of an alert goes to units: a
        Cancel always does (to the units that had the alert), the others unless the alert is suppressed."""
        return kind == "cancelled" or identifier not in self.suppressed


class DeliveryControl:
    """Inhibition, then silences, then storm control, every tick (docs/guides/silences-and-inhibition.md).

    ``inhibitor``: `twin.alerting.inhibition.Inhibitor`; ``silences``: `twin.alerting.silences.SilenceBook` or None;
    ``storm``: `StormControl`. Keeps which alerts were suppressed, to deliver an alert when its suppression ends.
    """

    def __init__(self, inhibitor, silences, storm: StormControl) -> None:
        self.inhibitor, self.silences, self.storm = inhibitor, silences, storm
        self.suppressed: dict[str, dict] = {}

    def tick(self, t: float, labels: list[AlertLabels], raised: Iterable[str]) -> DeliveryPlan:
        """At twin time ``t`` [unix s], with the labels of every active alert (after the book's tick) and the
        identifiers raised this tick."""
        raised = set(raised)
        quiet: dict[str, dict] = {}
        for target, (source, rule) in self.inhibitor.inhibited(labels).items():
            quiet[target] = {"by": "inhibition", "id": source, "reason": f"inhibited by {source} (rule {rule})"}
        for a in labels:
            s = self.silences.matching(a, t) if self.silences is not None and a.identifier not in quiet else None
            if s is not None:
                quiet[a.identifier] = {"by": "silence", "id": s.id,
                                       "reason": f"silenced by {s.created_by} until {s.ends_at:.0f}: {s.comment}"}
        lifted = [a for a in labels if a.identifier in self.suppressed and a.identifier not in quiet
                  and self.suppressed[a.identifier]["by"] != "storm" and a.identifier not in raised]
        fresh = [a for a in labels if a.identifier in raised and a.identifier not in quiet]
        decision = self.storm.tick(t, fresh + lifted, labels)
        for ident, summary in decision.held.items():
            quiet[ident] = {"by": "storm", "id": summary, "reason": f"held in the alert storm summary {summary}"}
        for a in labels:
            summary = self.storm.holding(a.identifier)
            if summary is not None and a.identifier not in quiet:
                quiet[a.identifier] = {"by": "storm", "id": summary,
                                       "reason": f"held in the alert storm summary {summary}"}
        lifted_ids = {a.identifier for a in lifted}
        send = [i for i in decision.deliver if i in lifted_ids] + [i for i in decision.released if i not in quiet]
        self.suppressed = quiet
        return DeliveryPlan(dict(quiet), send, decision)

    def save_state(self) -> dict:
        """The storm's state and which alerts are suppressed."""
        return {"storm": self.storm.save_state(), "suppressed": {k: dict(v) for k, v in self.suppressed.items()}}

    def restore_state(self, state: dict) -> None:
        """Take back `save_state`."""
        self.storm.restore_state(state["storm"])
        self.suppressed = {k: dict(v) for k, v in state["suppressed"].items()}
