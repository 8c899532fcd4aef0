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
- Two ``info`` blocks, ``zh-CN`` then ``en-US``, with the same category, responseType, urgency, severity,
  certainty, times, senderName, web, contact, parameters and area geometry; event, headline, description
  and instruction are in the block's language. The headline names the place (``alert.place.name_zh`` /
  ``name_en``, else the district): ``外滩隧道北口积水红色预警`` /
  ``Red waterlogging warning, Bund Tunnel north portal``.
- ``scope`` is ``Public`` (``city/alerts/{id}``); `restricted` makes the copy for the field units' topics.
"""

from __future__ import annotations

import copy
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
Values = Callable[[str], dict[str, object]]
"""alert identifier -> CAP parameters of its current value, peak and trend (`twin.alerting.values.AlertValues`)."""
DISTRICT_NAMES = {"bund": ("Bund", "外滩")}
"""District key -> (English, Chinese) name, for headlines of alerts without a place (the rainstorm signal); an
unknown district is named by its key."""
DEFAULT_CONTACT = "城市运行管理中心值班室 / citytwin operations centre duty desk"
"""CAP ``contact`` unless the context names one [design: a placeholder, to be set by the deployment]."""
DEFAULT_RESTRICTION = "Field units of the Shanghai operations centre only; 仅限现场处置单位"
"""CAP ``restriction`` of the copy sent on the field units' topics (`restricted`)."""
UNIT_ZH = {"person/m2": "人/平方米", "m": "米", "km/h": "公里/小时", "mm": "毫米"}
"""Hazard units (`models.hazards`) as written in Chinese texts."""
LEVEL_GRADE = {1: "IV", 2: "III", 3: "II", 4: "I"}
"""China's warning grades: blue IV ... red I."""
CLEAR_NOTES_ZH = {"conditions back below the clear thresholds": "监测值已回落至解除阈值以下"}
"""Chinese for the lifecycle's reasons of a Cancel (`twin.alerting.lifecycle`); ``merged into {id}`` is
``已并入预警 {id}``; any other reason is quoted as it is."""


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
    sender_name : str
        CAP ``senderName``; empty: ``上海市城市运行数字孪生·{district} / citytwin {district} operations twin``.
    contact : str
        CAP ``contact`` (`DEFAULT_CONTACT`); left out when empty.
    web_base : str
        The dashboard's base URL (``http://host:port``); CAP ``web`` is ``{web_base}/#alert={id}``, left out when
        empty.
    alert_values : callable or None
        alert identifier -> CAP parameters of its value (``value``, ``peakValue``, ``peakAt``, ``trend``), listed
        after the evidence; none if None.
    """

    grid: GridSpec
    sender: str
    district: str
    status: str = "Actual"
    evidence: Evidence | None = None
    describe: Describe | None = None
    model_version: str = ""
    forecast_horizon_s: float = 300.0
    sender_name: str = ""
    contact: str = DEFAULT_CONTACT
    web_base: str = ""
    alert_values: Values | None = None

    @property
    def district_names(self) -> tuple[str, str]:
        """The district's (English, Chinese) names (`DISTRICT_NAMES`, else its key twice)."""
        return DISTRICT_NAMES.get(self.district, (self.district, self.district))

    @property
    def sender_label(self) -> str:
        """CAP ``senderName``: ``sender_name``, else one built from the district's names."""
        en, zh = self.district_names
        return self.sender_name or f"上海市城市运行数字孪生·{zh} / citytwin {en} operations twin"


def worst_value(layers: xr.Dataset, hazard: str, cells: np.ndarray) -> float:
    """The worst value of the hazard's metric layer (`models.hazards`) over ``cells``, in its unit; NaN without
    data."""
    spec = hazard_spec(hazard)
    if spec.metric not in layers:
        return float("nan")
    values = layers[spec.metric].values.ravel()[cells]
    values = values[np.isfinite(values)]
    return float(spec.worst_of(values)) if values.size else float("nan")


def peak_evidence(layers: xr.Dataset, hazard: str, cells: np.ndarray) -> dict[str, object]:
    """The worst value of the hazard's metric layer over ``cells`` as a CAP parameter (none if no data): e.g.
    ``peakDensity`` ``4.20 person/m2``, ``minSpeed`` ``12.00 km/h``, ``expectedDensity`` for a forecast."""
    spec, value = hazard_spec(hazard), worst_value(layers, hazard, cells)
    return {spec.evidence: f"{value:.2f} {spec.unit}"} if np.isfinite(value) else {}


WHOLE_DISTRICT_SHARE = 0.9
"""An alert over at least this share of the grid's cells (a district-wide rain signal) is about the whole district."""


def default_description(grid: GridSpec, district: str, cells: np.ndarray) -> str:
    """``district: n cells around lat N lon E`` (the cells' mean centre), or ``district: the whole district (全区,
    n cells)`` when the cells cover at least `WHOLE_DISTRICT_SHARE` of the grid."""
    if cells.size >= WHOLE_DISTRICT_SHARE * grid.size:
        return f"{district}: the whole district (全区, {cells.size} cells)"
    row, col = np.divmod(cells, grid.nx)
    lon, lat = geo.to_lonlat(grid.x[col], grid.y[row], grid.crs)
    return f"{district}: {cells.size} cells around {float(np.mean(lat)):.5f} N {float(np.mean(lon)):.5f} E"


def acknowledged_by(message: dict) -> list[str]:
    """Operators a CAP message lists as having acknowledged it (its parameters are the same in every block)."""
    if not message.get("info"):
        return []
    return [p["value"] for p in cap.info_block(message).get("parameter", []) if p["valueName"] == ACK_PARAMETER]


def restricted(message: dict, restriction: str = DEFAULT_RESTRICTION) -> dict:
    """A copy of ``message`` for the field units' topics: ``scope`` ``Restricted`` with ``restriction`` (who may
    read it), otherwise the same message (identifier, sent, references and info blocks). ValueError if
    ``restriction`` is empty (CAP requires it with scope Restricted)."""
    if not str(restriction).strip():
        raise ValueError("restricted: a Restricted CAP message needs a restriction text")
    out = copy.deepcopy(message)
    out["scope"], out["restriction"] = "Restricted", str(restriction)
    return out


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
               "status": ctx.status, "msgType": msg_type, "scope": "Public", "info": _infos(event, ctx)}
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
    if alert.place is not None:  # a place's own evidence (a road segment: its speeds, samples and road)
        params.update(alert.place.evidence)
    if ctx.alert_values is not None:
        params.update(ctx.alert_values(alert.identifier))
    if ctx.model_version:
        params["modelVersion"] = ctx.model_version
    return params


def place_names(alert: Alert, ctx: ComposeContext, params: dict[str, object] | None = None) -> tuple[str, str]:
    """(English, Chinese) short name of the alert's place for its headlines: ``alert.place.name_en`` /
    ``name_zh`` (`twin.alerting.segments.Place`); without them a road segment's ``roadName`` (English) and
    the district's names (`DISTRICT_NAMES`)."""
    district_en, district_zh = ctx.district_names
    place = alert.place
    en, zh = getattr(place, "name_en", "") or "", getattr(place, "name_zh", "") or ""
    road = str((params or {}).get("roadName") or "")
    return en or road or district_en, zh or district_zh


def _expected(alert: Alert, params: dict[str, object]) -> tuple[float, str] | None:
    """A forecast's expected value and unit (from its evidence parameter), None for an observed hazard."""
    spec = hazard_spec(alert.hazard)
    expected = params.get(spec.evidence)
    if spec.certainty == "Observed" or not expected:
        return None
    value, unit = str(expected).split(" ", 1)
    return float(value), unit


def _headlines(alert: Alert, ctx: ComposeContext, params: dict[str, object]) -> dict[str, str]:
    """Headline per language, naming the place: ``外滩隧道北口积水红色预警`` / ``Red waterlogging warning, Bund Tunnel
    north portal``; a forecast adds what is expected and when."""
    spec = hazard_spec(alert.hazard)
    place_en, place_zh = place_names(alert, ctx, params)
    en = spec.headline_en.format(colour=cap.LEVEL_COLOUR[alert.level].capitalize(), place=place_en)
    zh = spec.headline_zh.format(colour=cap.LEVEL_COLOUR_ZH[alert.level], place=place_zh)
    expected = _expected(alert, params)
    if expected is not None:
        value, unit = expected
        minutes = params["expectedInMinutes"]
        en += f": expected to reach {value:.1f} {unit} in {minutes} min"
        zh += f"：预计{minutes}分钟内达到{value:.1f}{UNIT_ZH.get(unit, unit)}"
    return {"en-US": en, "zh-CN": zh}


def _descriptions(event: AlertEvent, ctx: ComposeContext, params: dict[str, object]) -> dict[str, str]:
    """Description per language: level, grade, area and place; on a Cancel, why it ended."""
    alert = event.alert
    spec = hazard_spec(alert.hazard)
    if event.kind == "cancelled":
        note = event.note or "conditions back below the clear thresholds"
        merged = note.removeprefix("merged into ")
        zh = f"已并入预警 {merged}" if merged != note else CLEAR_NOTES_ZH.get(note, note)
        return {"en-US": note, "zh-CN": zh}
    colour, area_m2 = alert.level, alert.cells.size * ctx.grid.cell_area
    place_en, place_zh = place_names(alert, ctx, params)
    grade = LEVEL_GRADE[colour]
    return {"en-US": f"{spec.event} at level {cap.LEVEL_COLOUR[colour]} ({grade}) over {area_m2:.0f} m2, {place_en}.",
            "zh-CN": f"{place_zh}{spec.event_zh}：{cap.LEVEL_COLOUR_ZH[colour]}（{grade}级），"
                     f"影响面积约{area_m2:.0f}平方米。"}


def _shared(event: AlertEvent, ctx: ComposeContext, params: dict[str, object]) -> dict:
    """The elements every language's block has in common (`cap.SHARED_INFO`, plus the area's geometry)."""
    alert, cancel = event.alert, event.kind == "cancelled"
    spec = hazard_spec(alert.hazard)
    shared = {
        "category": spec.category, "responseType": "AllClear" if cancel else spec.response_type(alert.level),
        "urgency": "Past" if cancel else (spec.urgency or cap.LEVEL_URGENCY[alert.level]),
        "severity": cap.LEVEL_SEVERITY[alert.level], "certainty": spec.certainty,
        "onset": cap.cap_time(alert.raised_at), "expires": cap.cap_time(event.t + EXPIRES_S),
        "senderName": ctx.sender_label,
        "web": f"{ctx.web_base.rstrip('/')}/#alert={alert.identifier}" if ctx.web_base else "",
        "contact": ctx.contact,
        "parameter": cap.name_values([*params.items(), *((ACK_PARAMETER, op) for op in alert.acknowledged_by)]),
    }
    return {k: v for k, v in shared.items() if v}


def _area(alert: Alert, ctx: ComposeContext) -> dict:
    describe = ctx.describe or (lambda _h, cells: default_description(ctx.grid, ctx.district, cells))
    place = alert.place
    rings = place.rings if place is not None and place.rings else outline(ctx.grid, alert.cells)
    return {"areaDesc": place.description if place is not None else describe(alert.hazard, alert.cells),
            "polygon": [cap.polygon_text(r) for r in rings],
            "geocode": cap.name_values(("BeidouGridCode", c) for c in geocodes(ctx.grid, alert.cells))}


def _infos(event: AlertEvent, ctx: ComposeContext) -> list[dict]:
    """The ``zh-CN`` and ``en-US`` info blocks (`cap.LANGUAGES`), in that order."""
    alert, cancel = event.alert, event.kind == "cancelled"
    spec = hazard_spec(alert.hazard)
    params = _parameters(alert, ctx)
    shared = _shared(event, ctx, params)
    area = _area(alert, ctx)  # areaDesc is bilingual already (place names in both languages), one text for both
    headlines, descriptions = _headlines(alert, ctx, params), _descriptions(event, ctx, params)
    texts = {"zh-CN": (spec.event_zh or spec.event, spec.instruction_zh or spec.instruction, "解除："),
             "en-US": (spec.event, spec.instruction, "Cleared: ")}
    infos = []
    for language in cap.LANGUAGES:
        event_text, instruction, cleared = texts[language]
        info = {"language": language, **shared, "event": event_text,
                "headline": (cleared if cancel else "") + headlines[language],
                "description": descriptions[language], "area": [copy.deepcopy(area)]}
        if not cancel:
            info["instruction"] = instruction
        infos.append(info)
    return infos
