"""What the live twin does with its alerts after the lifecycle: values, suppression and the messages out (issue 16).

`TwinCore.on_tick` runs the alert book, then hands over to `AlertOutput`:

1. **Values** (`twin.alerting.values.AlertValues`): every active alert's current value (the worst of its hazard's
   metric over its cells), peak, trend and history are observed every tick. An alert whose value has moved by its
   hazard's step (`ValueSteps`) since its last message, and that has no other event this tick, gets an ``Update``
   (`AlertBook.refresh`), so a crowd alert no longer says 3.10 person/m2 while the crowd is at 4.6.
2. **Suppression** (`twin.alerting.storm.DeliveryControl`): inhibition rules, then silences, then storm control.
   A suppressed alert is still recorded in the store and published (retained) on ``city/alerts/{id}``; it is not
   delivered to the field units. When its suppression ends, the units get its current message.
3. **Messages out**: ``city/alerts/{id}`` carries the public message (CAP ``scope`` Public); each unit topic
   ``city/units/{unit}/alerts`` a copy with ``scope`` Restricted and a ``restriction``
   (`twin.alerting.compose.restricted`). Storm summaries are alerts of their own (`twin.alerting.summary`).

Everything here is deterministic given the same ticks, so a replay of the raw log after a crash rebuilds it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.hazards import hazard as hazard_spec
from twin.alerting.compose import restricted
from twin.alerting.delivery import Router
from twin.alerting.inhibition import Inhibitor
from twin.alerting.labels import cells_area, labels_of
from twin.alerting.lifecycle import Alert, AlertBook, AlertEvent
from twin.alerting.silences import SilenceBook
from twin.alerting.store import Store
from twin.alerting.storm import DeliveryControl, DeliveryPlan, StormControl
from twin.alerting.summary import summary_message
from twin.alerting.values import AlertValues, ValueSteps
from twin.district.grid import GridSpec

log = logging.getLogger(__name__)

Measure = Callable[[Alert], tuple[float, tuple[str, ...]]]
"""An active alert -> (its current worst value in its hazard's unit, NaN without data; the devices reporting)."""


@dataclass(frozen=True)
class OutputConfig:
    """Settings of the alert output (`twin.live.core.CoreConfig` carries them).

    ``inhibit_rules``: a rules file (docs/guides/silences-and-inhibition.md), None for the packaged defaults;
    ``storm_max_new_per_min`` / ``storm_window_s``: storm control (`twin.alerting.storm.StormControl`);
    ``steps``: the value steps that make an Update (`twin.alerting.values.ValueSteps`).
    """

    inhibit_rules: str | None = None
    storm_max_new_per_min: int = 10
    storm_window_s: float = 60.0
    steps: ValueSteps = field(default_factory=ValueSteps)


def _json(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def unit_payload(message: dict) -> bytes:
    """What a unit topic carries of a CAP message: its restricted copy (`twin.alerting.compose.restricted`)."""
    return _json(restricted(message))


class AlertOutput:
    """Values, suppression and publication of one district's alerts (see the module docstring)."""

    def __init__(self, prefix: str, district: str, grid: GridSpec, store: Store, router: Router,
                 config: OutputConfig | None = None) -> None:
        self.prefix, self.district, self.grid = prefix, district, grid
        self.store, self.router = store, router
        self.config = cfg = config or OutputConfig()
        self.values = AlertValues()
        self.silences = SilenceBook(store)
        inhibitor = Inhibitor.from_file(cfg.inhibit_rules) if cfg.inhibit_rules else Inhibitor.default()
        self.delivery = DeliveryControl(inhibitor, self.silences,
                                        StormControl(cfg.storm_max_new_per_min, cfg.storm_window_s, district=district))
        self.notices: list[str] = []
        """The last tick's notices for the operator (an alert storm began or ended)."""
        self._areas: dict[str, tuple[int, object]] = {}
        self._summaries: dict[str, list[dict]] = {}
        """The messages of each storm summary still open, oldest first."""

    # ------------------------------------------------------------ values
    def observe(self, t: float, book: AlertBook, measure: Measure) -> None:
        """Observe every active alert's value at ``t`` [unix s]."""
        for alert in book.active.values():
            value, devices = measure(alert)
            self.values.observe(t, alert.identifier, alert.hazard, value, devices)

    def refreshes(self, t: float, book: AlertBook, events: list[AlertEvent]) -> list[AlertEvent]:
        """Updates for the active alerts whose value moved by their hazard's step and that have no event now."""
        busy = {e.alert.identifier for e in events}
        out = []
        for ident, alert in book.active.items():
            if ident not in busy and self.values.due(ident, self.config.steps.step(alert.hazard)):
                event = book.refresh(t, ident, note="value changed")
                if event is not None:
                    out.append(event)
        return out

    def parameters(self, identifier: str) -> dict[str, str]:
        """The alert's value parameters for its next CAP message (`AlertValues.parameters`; the devices are in the
        evidence already)."""
        return {k: v for k, v in self.values.parameters(identifier).items() if k != "devices"}

    # ------------------------------------------------------------ suppression
    def plan(self, t: float, book: AlertBook, events: list[AlertEvent], devices: Callable[[Alert], tuple]) -> \
            DeliveryPlan:
        """Inhibition, silences and storm control over the active alerts after this tick's events."""
        labels = [labels_of(a, devices(a), self._area(a), district=self.district, cells_total=self.grid.size,
                            value=self._value(a.identifier)) for a in book.active.values()]
        plan = self.delivery.tick(t, labels, [e.alert.identifier for e in events if e.kind == "raised"])
        self.notices = list(plan.storm.notices)
        for notice in self.notices:
            log.info("alert storm: %s", notice)
        return plan

    def suppressed(self, identifier: str) -> dict | None:
        """Why an alert is not delivered to units now (``{"by", "id", "reason"}``), None if it is."""
        return self.delivery.suppressed.get(identifier)

    def _value(self, identifier: str) -> float:
        value = self.values.current(identifier)
        return float("nan") if value is None else float(value)

    def _area(self, alert: Alert):
        """The alert's cells as one geometry (grid CRS), cached per cell set."""
        key = hash(alert.cells.tobytes())
        cached = self._areas.get(alert.identifier)
        if cached is None or cached[0] != key:
            cached = self._areas[alert.identifier] = (key, cells_area(alert.cells, self.grid))
        return cached[1]

    # ------------------------------------------------------------ messages out
    def publish(self, ev: AlertEvent, units: list, row: dict) -> None:
        """Record an event's message and queue it: public and retained on ``city/alerts/{id}``, and a restricted
        copy to the units the router picks (not while the alert is suppressed, as the last `plan` decided; a Cancel
        to everyone who had it)."""
        ident = ev.alert.identifier
        outbox: list[tuple[str, bytes | None, bool]] = [(f"{self.prefix}alerts/{ident}", _json(ev.message), True)]
        to_units = ev.kind == "cancelled" or self.suppressed(ident) is None
        if ev.kind == "cancelled":
            outbox.append((f"{self.prefix}alerts/{ident}", None, True))  # then the retained message is removed
            area = self.router.areas.get(ident)
            recipients = sorted(area.delivered) if area else []  # everyone who had the alert hears it is over
            self.router.close(ident)
            self.values.forget(ident)
            self._areas.pop(ident, None)
        else:
            self.router.set_area(ident, ev.alert.raised_at, ev.alert.cells)
            recipients = self.router.recipients(ident, units, nearest_if_none=True) if to_units else []
            self.router.mark_delivered(ident, recipients)
            self.values.mark_published(ident)
        if recipients:
            unit_body = unit_payload(ev.message)
            outbox += [(f"{self.prefix}units/{u}/alerts", unit_body, False) for u in recipients]
        self.store.record(row, ev.message, outbox)

    def send_current(self, plan: DeliveryPlan, book: AlertBook, units: list, busy: set[str]) -> None:
        """Alerts whose suppression ended (or that a storm released) and had no event now: their current message
        to the units the router picks, once (keyed in the outbox)."""
        for ident in plan.send_current:
            alert = book.active.get(ident)
            if alert is None or ident in busy or not alert.messages:
                continue
            self.router.set_area(ident, alert.raised_at, alert.cells)
            recipients = self.router.recipients(ident, units, nearest_if_none=True)
            body = unit_payload(alert.last)
            for u in recipients:
                self.store.enqueue([(f"{self.prefix}units/{u}/alerts", body, False)],
                                   key=f"{alert.last['identifier']}.release@{u}")
            self.router.mark_delivered(ident, recipients)

    def publish_summaries(self, plan: DeliveryPlan, book: AlertBook, sender: str, status: str, t: float) -> \
            list[dict]:
        """The storm summaries of this tick as CAP messages, recorded and published on ``city/alerts/{id}``;
        returns them. A summary goes to no unit: its members' units had or will have their own alerts."""
        out = []
        for summary in plan.storm.summaries:
            members = [book.active[i].cells for i in summary.member_ids if i in book.active]
            cells = np.unique(np.concatenate(members)) if members else np.zeros(0, np.int64)
            history = self._summaries.setdefault(summary.identifier, [])
            message = summary_message(summary, self.grid, cells, sender, status, t,
                                      history[-1] if history else None, len(history))
            history.append(message)
            if summary.kind == "cleared":
                del self._summaries[summary.identifier]
            topic = f"{self.prefix}alerts/{summary.identifier}"
            outbox: list[tuple[str, bytes | None, bool]] = [(topic, _json(message), True)]
            if summary.kind == "cleared":
                outbox.append((topic, None, True))
            row = {"identifier": summary.identifier, "hazard": f"{summary.hazard}_storm", "level": summary.level,
                   "state": "cancelled" if summary.kind == "cleared" else "active", "raised_at": summary.started_at,
                   "updated_at": t, "cancelled_at": t if summary.kind == "cleared" else None,
                   "cells": [int(c) for c in cells]}
            self.store.record(row, message, outbox)
            out.append(message)
        return out

    # ------------------------------------------------------------ the dashboard
    def live(self, book: AlertBook) -> dict[str, dict]:
        """Per active alert: its values (`AlertValues.snapshot`), ``suppressed`` and its place (``place`` key,
        ``place_name``, ``place_name_zh``; empty for a region of the level grid)."""
        out = {}
        for ident, alert in book.active.items():
            snap = self.values.snapshot(ident) or {"value": None, "unit": hazard_spec(alert.hazard).unit,
                                                   "peak": None, "peak_at": None, "trend": None,
                                                   "trend_word": "steady", "trend_arrow": "→", "history": [],
                                                   "devices": []}
            place = alert.place
            out[ident] = {**snap, "suppressed": self.suppressed(ident),
                          "place": (place.key or place.description) if place is not None else "",
                          "place_name": place.name_en if place is not None else "",
                          "place_name_zh": place.name_zh if place is not None else ""}
        return out

    # ------------------------------------------------------------ snapshots
    def save_state(self) -> dict:
        """Values and suppression (silences are in the store, inhibition rules have no state)."""
        return {"values": self.values.save_state(), "delivery": self.delivery.save_state(),
                "summaries": {k: list(v) for k, v in self._summaries.items()}}

    def restore_state(self, state: dict | None) -> None:
        """Take back `save_state` (nothing for a snapshot from before issue 16)."""
        if not state:
            return
        self.values.restore_state(state["values"])
        self.delivery.restore_state(state["delivery"])
        self._summaries = {k: list(v) for k, v in state.get("summaries", {}).items()}


__all__ = ["AlertOutput", "Measure", "OutputConfig", "unit_payload"]
