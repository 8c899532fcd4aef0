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

from models.hazards import hazard as hazard_spec
from twin.alerting import cap
from twin.alerting.lifecycle import Alert, AlertEvent
from twin.alerting.regions import geocodes, outline
from twin.district import geo
from twin.district.grid import GridSpec

EXPIRES_S = 6 * 3600
"""An alert's ``expires`` is its last message plus this; a long alert is refreshed by updates. [s]"""
ACK_PARAMETER = "acknowledgedBy"
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
    forecast_horizon_s : float
        How far ahead a forecast hazard looks (the crowd's ``trend_horizon``), named in its headline. [s]
    """

    grid: GridSpec
    sender: str
    district: str
    status: str = "Actual"
    evidence: Evidence | None = None
    describe: Describe | None = None
    model_version: str = ""
    forecast_horizon_s: float = 300.0


def peak_evidence(layers: xr.Dataset, hazard: str, cells: np.ndarray) -> dict[str, object]:
    """The worst value of the hazard's metric layer (`models.hazards`) over ``cells`` as a CAP parameter (none if no
    data): e.g. ``peakDensity`` ``4.20 person/m2``, ``minSpeed`` ``12.00 km/h``, ``expectedDensity`` for a forecast."""
    spec = hazard_spec(hazard)
    if spec.metric not in layers:
        return {}
    values = layers[spec.metric].values.ravel()[cells]
    values = values[np.isfinite(values)]
    return {spec.evidence: f"{spec.worst_of(values):.2f} {spec.unit}"} if values.size else {}


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


def _parameters(alert: Alert, ctx: ComposeContext) -> dict[str, object]:
    area_m2 = alert.cells.size * ctx.grid.cell_area
    params: dict[str, object] = {"warningLevel": cap.LEVEL_COLOUR[alert.level], "hazard": alert.hazard,
                                 "cells": alert.cells.size, "areaM2": f"{area_m2:.0f}"}
    if hazard_spec(alert.hazard).certainty != "Observed":
        params["expectedInMinutes"] = f"{ctx.forecast_horizon_s / 60.0:.0f}"
    if ctx.evidence is not None:
        params.update(ctx.evidence(alert.hazard, alert.cells))
    if alert.place is not None:  # a road segment: its own speeds, samples and road (twin.alerting.segments)
        params.update(alert.place.evidence)
    if ctx.model_version:
        params["modelVersion"] = ctx.model_version
    return params


def _headline(alert: Alert, ctx: ComposeContext, params: dict[str, object]) -> str:
    """``Orange crowd density warning, bund``; a forecast adds what is expected and when."""
    spec = hazard_spec(alert.hazard)
    headline = f"{cap.LEVEL_COLOUR[alert.level].capitalize()} {spec.event.lower()}, {ctx.district}"
    if params.get("roadName"):
        headline += f": {params['roadName']}"
    expected = params.get(spec.evidence)
    if spec.certainty != "Observed" and expected:
        value, unit = str(expected).split(" ", 1)
        headline += f": expected to reach {float(value):.1f} {unit} in {params['expectedInMinutes']} min"
    return headline


def _info(event: AlertEvent, ctx: ComposeContext) -> dict:
    alert, cancel = event.alert, event.kind == "cancelled"
    spec = hazard_spec(alert.hazard)
    colour = cap.LEVEL_COLOUR[alert.level]
    params = _parameters(alert, ctx)
    headline = _headline(alert, ctx, params)
    area_m2 = alert.cells.size * ctx.grid.cell_area
    describe = ctx.describe or (lambda _h, cells: default_description(ctx.grid, ctx.district, cells))
    place = alert.place
    rings = place.rings if place is not None and place.rings else outline(ctx.grid, alert.cells)
    return {
        "category": spec.category, "event": spec.event,
        "urgency": "Past" if cancel else (spec.urgency or cap.LEVEL_URGENCY[alert.level]),
        "severity": cap.LEVEL_SEVERITY[alert.level], "certainty": spec.certainty,
        "onset": cap.cap_time(alert.raised_at), "expires": cap.cap_time(event.t + EXPIRES_S),
        "headline": ("Cleared: " + headline) if cancel else headline,
        "description": (event.note if cancel else "") or f"{spec.event} at level {colour} over {area_m2:.0f} m2.",
        "instruction": "" if cancel else spec.instruction,
        "parameter": cap.name_values([*params.items(), *((ACK_PARAMETER, op) for op in alert.acknowledged_by)]),
        "area": [{"areaDesc": place.description if place is not None else describe(alert.hazard, alert.cells),
                  "polygon": [cap.polygon_text(r) for r in rings],
                  "geocode": cap.name_values(("BeidouGridCode", c) for c in geocodes(ctx.grid, alert.cells))}],
    }
