"""Every CAP 1.2 message of an alert, built in one place from a lifecycle event and its context.

`twin.alerting.lifecycle.AlertBook` decides *what happened* to an alert (raised, updated,
cancelled, acknowledged) and knows nothing of CAP. `compose` turns one such event into the
alert's next CAP message; `issue` composes a list of events in order and appends each message to
its alert's history. Nothing rewrites a message once it is composed. The CAP profile is in
docs/contract/cap.md; in short:

- ``Alert`` for a raised alert; ``Update`` (identifier ``{alert}.update{n}``) for a change of level
  or area, and for an absorbed neighbour; ``Cancel`` (``{alert}.cancel{n}``) when it clears or merges;
  an operator's acknowledgement is an ``Update`` with its own identifier ``{alert}.ack{k}`` (k: the
  number of operators so far) and a CAP ``note`` saying who, when and why. n is the number of
  messages the alert already has, so identifiers never collide.
- From the first acknowledgement on, every message of the alert lists ``acknowledgedBy`` once per
  operator, in order.
- ``status`` comes from the context: ``Actual`` in the live twin, ``Exercise`` for scenarios.
- Level blue / yellow / orange / red -> severity Minor / Moderate / Severe / Extreme.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from twin.alerting import cap
from twin.alerting.lifecycle import Alert, AlertEvent
from twin.alerting.regions import geocodes, outline
from twin.district import geo
from twin.district.grid import GridSpec

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
ACK_PARAMETER = "acknowledgedBy"
EVIDENCE_LAYER = {"crowd": ("crowd_density", "peakDensity", "person/m2", max),
                  "flood": ("water_depth", "peakDepth", "m", max),
                  "traffic": ("traffic_speed", "minSpeed", "km/h", min),
                  "rain": ("rain_1h", "peakRain1h", "mm", max)}
"""Per hazard: the layer whose value in the area is the alert's evidence, the CAP parameter name, its
units, and whether the worst value is the largest (depth, density, rain) or the smallest (speed)."""

Evidence = Callable[[str, np.ndarray], dict[str, object]]
"""(hazard, flat cell indices) -> CAP parameters describing the evidence (peak values, devices)."""
Describe = Callable[[str, np.ndarray], str]
"""(hazard, flat cell indices) -> the areaDesc text."""


@dataclass(frozen=True)
class ComposeContext:
    """What a CAP message needs besides the event: who sends it, where, and how to describe an area.

    Attributes
    ----------
    grid : GridSpec
        The twin's grid (cell outlines, areas and Beidou codes).
    sender : str
        CAP ``sender`` (no spaces or commas), e.g. ``twin.bund@citytwin``.
    district : str
        Short district name used in headlines and area descriptions.
    status : str
        CAP ``status``: ``Actual`` live, ``Exercise`` for scenarios.
    evidence : callable or None
        (hazard, cells) -> extra CAP parameters (peak values, devices); none if None.
    describe : callable or None
        (hazard, cells) -> ``areaDesc``; `default_description` if None.
    model_version : str
        Listed as the ``modelVersion`` parameter when not empty.
    """

    grid: GridSpec
    sender: str
    district: str
    status: str = "Actual"
    evidence: Evidence | None = None
    describe: Describe | None = None
    model_version: str = ""


def peak_evidence(layers: xr.Dataset, hazard: str, cells: np.ndarray) -> dict[str, object]:
    """The worst value of the hazard's evidence layer over ``cells`` as a CAP parameter (none if no data)."""
    layer, name, units, pick = EVIDENCE_LAYER[hazard]
    if layer not in layers:
        return {}
    values = layers[layer].values.ravel()[cells]
    values = values[np.isfinite(values)]
    return {name: f"{pick(values):.2f} {units}"} if values.size else {}


def default_description(grid: GridSpec, district: str, cells: np.ndarray) -> str:
    """``district: n cells around lat N lon E`` (the cells' mean centre)."""
    row, col = np.divmod(cells, grid.nx)
    lon, lat = geo.to_lonlat(grid.x[col], grid.y[row], grid.crs)
    return f"{district}: {cells.size} cells around {float(np.mean(lat)):.5f} N {float(np.mean(lon)):.5f} E"


def acknowledged_by(message: dict) -> list[str]:
    """Operators a CAP message lists as having acknowledged it."""
    return [p["value"] for info in message.get("info", []) for p in info.get("parameter", [])
            if p["valueName"] == ACK_PARAMETER]


def issue(events: Iterable[AlertEvent], ctx: ComposeContext) -> list[AlertEvent]:
    """Compose each event's message in order, store it on the event and append it to its alert's messages."""
    out = []
    for event in events:
        event.message = compose(event, ctx)
        event.alert.messages.append(event.message)
        out.append(event)
    return out


def compose(event: AlertEvent, ctx: ComposeContext) -> dict:
    """The CAP message (JSON form) announcing ``event`` (see the module docstring)."""
    alert = event.alert
    msg_type = {"raised": "Alert", "cancelled": "Cancel"}.get(event.kind, "Update")
    message = {"identifier": _identifier(event), "sender": ctx.sender, "sent": cap.cap_time(event.t),
               "status": ctx.status, "msgType": msg_type, "scope": "Public", "info": [_info(event, ctx)]}
    if event.kind == "acknowledged":
        message["note"] = _ack_note(event)
    refs = [alert.last] if alert.messages else []
    refs += [a.last for a in event.absorbed]
    if msg_type != "Alert" and refs:
        message["references"] = " ".join(cap.reference(m) for m in refs)
    return message


def _identifier(event: AlertEvent) -> str:
    alert = event.alert
    if event.kind == "raised":
        return alert.identifier
    if event.kind == "acknowledged":
        return f"{alert.identifier}.ack{len(alert.acknowledged_by)}"
    kind = "cancel" if event.kind == "cancelled" else "update"
    return f"{alert.identifier}.{kind}{len(alert.messages)}"


def _ack_note(event: AlertEvent) -> str:
    operator = event.alert.acknowledged_by[-1]
    return f"Acknowledged by operator {operator} at {cap.cap_time(event.t)}" + (f": {event.note}" if event.note else "")


def _parameters(alert: Alert, ctx: ComposeContext) -> list[dict[str, str]]:
    area_m2 = alert.cells.size * ctx.grid.cell_area
    params = {"warningLevel": cap.LEVEL_COLOUR[alert.level], "hazard": alert.hazard, "cells": alert.cells.size,
              "areaM2": f"{area_m2:.0f}"}
    if ctx.evidence is not None:
        params.update(ctx.evidence(alert.hazard, alert.cells))
    if ctx.model_version:
        params["modelVersion"] = ctx.model_version
    return cap.name_values([*params.items(), *((ACK_PARAMETER, op) for op in alert.acknowledged_by)])


def _info(event: AlertEvent, ctx: ComposeContext) -> dict:
    alert, cancel = event.alert, event.kind == "cancelled"
    spec = HAZARDS[alert.hazard]
    colour = cap.LEVEL_COLOUR[alert.level]
    headline = f"{colour.capitalize()} {spec['event'].lower()}, {ctx.district}"
    area_m2 = alert.cells.size * ctx.grid.cell_area
    describe = ctx.describe or (lambda _h, cells: default_description(ctx.grid, ctx.district, cells))
    return {
        "category": spec["category"], "event": spec["event"],
        "urgency": "Past" if cancel else cap.LEVEL_URGENCY[alert.level],
        "severity": cap.LEVEL_SEVERITY[alert.level], "certainty": "Observed",
        "onset": cap.cap_time(alert.raised_at), "expires": cap.cap_time(event.t + EXPIRES_S),
        "headline": ("Cleared: " + headline) if cancel else headline,
        "description": (event.note if cancel else "") or f"{spec['event']} at level {colour} over {area_m2:.0f} m2.",
        "instruction": "" if cancel else spec["instruction"],
        "parameter": _parameters(alert, ctx),
        "area": [{"areaDesc": describe(alert.hazard, alert.cells),
                  "polygon": [cap.polygon_text(r) for r in outline(ctx.grid, alert.cells)],
                  "geocode": cap.name_values(("BeidouGridCode", c) for c in geocodes(ctx.grid, alert.cells))}],
    }

