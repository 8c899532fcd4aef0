"""Pydantic models of the small request and response bodies (they document ``/docs``)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Problem(BaseModel):
    """One problem of an invalid request (422 ``invalid_request``)."""

    where: str = Field(description="where in the request, e.g. query.lon or body.operator")
    problem: str = Field(description="what is wrong there")


class ErrorBody(BaseModel):
    """Every error answer of the API, whatever its status (docs/contract/http.md, "Errors")."""

    error: str = Field(description="a short code: not_found, unknown_layer, invalid_request, unauthorized, ...")
    detail: str | list[Problem] | None = Field(
        description="what went wrong: a sentence, or the request's problems (422 invalid_request)")


class Health(BaseModel):
    """``GET /api/health``."""

    status: str = Field(description="ok, starting (no tick yet) or stale (no tick for a while: HTTP 503)")
    t: float = Field(description="the twin's clock [unix s]")
    last_tick: float | None = Field(description="time of the last tick [unix s]")
    tick_age_s: float | None = Field(description="twin seconds since the last tick [s]")


class LayerSummary(BaseModel):
    """One layer of ``GET /api/grid``."""

    name: str
    units: str = Field(description="CF/UDUNITS units; 1 for dimensionless")
    long_name: str
    kind: str = Field(description="static, live, risk or level")
    source: str = Field(description="static (CIM, built once) or live (recomputed every tick)")
    dtype: str


class Grid(BaseModel):
    """``GET /api/grid``: the twin's grid and its layers."""

    district: str | None
    crs: str = Field(description="projected CRS of the grid, e.g. EPSG:4549")
    cell_size: float = Field(description="side of a square cell [m]")
    shape: tuple[int, int] = Field(description="(rows, cols); row 0 is the north edge, col 0 the west edge")
    origin: tuple[float, float] = Field(description="(x0, y0): north-west corner in the grid CRS [m]")
    bounds: tuple[float, float, float, float] = Field(description="xmin, ymin, xmax, ymax in the grid CRS [m]")
    bounds_lonlat: tuple[float, float, float, float] = Field(description="W, S, E, N [degree]")
    beidou_level: int = Field(description="GB/T 39409 level of the cells' Beidou grid codes")
    credit: str | None
    t: float | None = Field(description="time of the live layers [unix s]; null before the first tick")
    layers: list[LayerSummary]


class AckRequest(BaseModel):
    """``POST /api/alerts/{id}/ack`` body."""

    operator: str = Field(min_length=1, max_length=64, description="who acknowledges, as shown to others")
    note: str | None = Field(default=None, max_length=500, description="optional note, published in the CAP note")

    @field_validator("operator", "note")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not v.isprintable():  # controls, and Unicode's invisible ones: bidi overrides, line separators, ...
            raise ValueError("must be printable: no control, format or line-separator characters")
        return v

    @field_validator("operator")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be blank")
        return v


class AckRecord(BaseModel):
    """One stored acknowledgement."""

    actor: str
    kind: str = Field(description="unit or operator")
    status: str = Field(description="ack, on_scene or resolved")
    t: float = Field(description="[unix s]")


class AckResponse(BaseModel):
    """``POST /api/alerts/{id}/ack`` answer."""

    alert: str
    operator: str
    t: float = Field(description="time of the acknowledgement [unix s]")
    already: bool = Field(description="this operator had already acknowledged the alert; nothing changed")
    message: str | None = Field(description="identifier of the CAP Update that publishes it (null if already)")
    acks: list[AckRecord]


# ---------------------------------------------------------------- silences (docs/guides/silences-and-inhibition.md)
def _printable_text(v: str | None) -> str | None:
    if v is None:
        return v
    v = v.strip()
    if not v.isprintable():  # controls, and Unicode's invisible ones: bidi overrides, line separators, ...
        raise ValueError("must be printable: no control, format or line-separator characters")
    if not v:
        raise ValueError("must not be blank")
    return v


class SilenceMatcher(BaseModel):
    """One label matcher of a silence (Alertmanager's operators; regular expressions anchored at both ends)."""

    label: str = Field(min_length=1, max_length=32, examples=["hazard"],
                       description="hazard, level, level_number, place, place_name, device, district, identifier "
                                   "or scope")
    op: Literal["=", "!=", "=~", "!~"] = Field(default="=", description="= != =~ !~")
    value: str = Field(max_length=200, examples=["flood"], description="the value, or a regular expression")


class SilenceRequest(BaseModel):
    """``POST /api/silences`` body: what to mute, from when to when, who and why."""

    matchers: list[SilenceMatcher] = Field(min_length=1, max_length=16,
                                           description="all must hold for an alert to be silenced")
    starts_at: float | None = Field(default=None, allow_inf_nan=False,
                                    description="start [unix s, twin time]; omitted or past: now")
    ends_at: float | None = Field(default=None, allow_inf_nan=False, description="end [unix s, twin time]")
    duration_s: float | None = Field(default=None, gt=0, le=31 * 86400, allow_inf_nan=False,
                                     description="instead of ends_at: how long from the start [s]")
    created_by: str = Field(min_length=1, max_length=64, description="who makes the silence")
    comment: str = Field(min_length=1, max_length=500, description="why")

    @field_validator("created_by", "comment")
    @classmethod
    def _printable(cls, v: str) -> str:
        return _printable_text(v)


class SilenceExpireRequest(BaseModel):
    """``DELETE /api/silences/{id}`` body (or the query parameters ``who`` and ``why``)."""

    who: str = Field(min_length=1, max_length=64, description="who ends the silence")
    why: str = Field(min_length=1, max_length=500, description="why it ends early")

    @field_validator("who", "why")
    @classmethod
    def _printable(cls, v: str) -> str:
        return _printable_text(v)


class SilenceOut(BaseModel):
    """One silence."""

    id: str
    state: str = Field(description="pending, active or expired (at the twin's time)")
    matchers: list[SilenceMatcher]
    starts_at: float = Field(description="[unix s, twin time]")
    ends_at: float = Field(description="[unix s, twin time]")
    created_by: str
    comment: str
    created_at: float = Field(description="[unix s, twin time]")
    expired_at: float | None = Field(description="when it was ended early [unix s], else null")
    expired_by: str | None
    expired_comment: str | None


class SilenceList(BaseModel):
    """``GET /api/silences``."""

    t: float = Field(description="the twin's time the states are given at [unix s]")
    silences: list[SilenceOut]


class SilenceAuditRow(BaseModel):
    """One change of a silence."""

    silence_id: str
    action: str = Field(description="create or expire")
    actor: str = Field(description="who made the change")
    t: float = Field(description="when [unix s, twin time]")
    comment: str
    before: dict | None = Field(description="the silence before the change (null on create)")
    after: dict | None = Field(description="the silence after the change")


class SilenceAudit(BaseModel):
    """``GET /api/silences/audit``: changes, oldest first."""

    rows: list[SilenceAuditRow]


# ---------------------------------------------------------------- cases, field units (docs/contract/http.md "Cases")
CASE_STEPS = ("accepted", "en_route", "on_scene", "disposed", "verified", "closed", "reopened", "cancelled",
              "declined")
"""The status-changing kinds of ``POST /api/cases/{id}/transition`` (`twin.cases.model.TRANSITIONS`)."""
UNIT_ANSWERS = ("accepted", "en_route", "on_scene", "disposed", "declined")
"""What a field unit answers a task with (``POST /api/units/{unit}/tasks/{case}/status``)."""
MAX_URL = 500
"""Longest attachment URL [character] (as a report's media URL)."""


def _printable_or_blank(v: str) -> str:
    v = v.strip()
    if not v.isprintable():
        raise ValueError("must be printable: no control, format or line-separator characters")
    return v


def _multiline_text(v: str) -> str:
    """Text that may have line breaks (a note), but no other control or invisible characters."""
    v = v.strip()
    if not all(c.isprintable() or c in "\n\t" for c in v):
        raise ValueError("must be printable: no control, format or line-separator characters but new lines")
    if not v:
        raise ValueError("must not be blank")
    return v


class CaseWrite(BaseModel):
    """Who makes an operator's change to a case (every ``POST /api/cases...`` body has it)."""

    operator: str = Field(min_length=1, max_length=64, description="who, as shown in the case's history")

    @field_validator("operator")
    @classmethod
    def _operator(cls, v: str) -> str:
        return _printable_text(v)


class CaseOpenRequest(CaseWrite):
    """``POST /api/cases``: an operator opens a case at a place."""

    category: str = Field(pattern=r"^[a-z0-9_]{1,64}$", examples=["road_obstruction"],
                          description="a service code of GET /open311/v2/services.json")
    priority: int = Field(default=3, ge=1, le=3, description="1 urgent, 2 high, 3 normal")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="the place, CGCS2000 [degree]")
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="the place, CGCS2000 [degree]")
    name_zh: str = Field(default="", max_length=100, description="the place's name in Chinese")
    name_en: str = Field(default="", max_length=100, description="the place's name in English")
    reason: str = Field(min_length=1, max_length=500, description="why the case is opened")

    @field_validator("name_zh", "name_en")
    @classmethod
    def _names(cls, v: str) -> str:
        return _printable_or_blank(v)

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        return _multiline_text(v)


class CaseDispatchRequest(CaseWrite):
    """``POST /api/cases/{id}/dispatch``: send a unit (the first suggestion when ``unit`` is empty)."""

    unit: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9._:-]*$",
                      description='the unit to send; "" sends the first suggestion')
    reason: str = Field(default="", max_length=500, description="why this unit (optional)")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        return _multiline_text(v) if v.strip() else ""


class CaseTransitionRequest(CaseWrite):
    """``POST /api/cases/{id}/transition``: move a case a step (the operator's steps are verified, closed,
    cancelled and reopened; a unit's steps may be recorded for it, e.g. when it answered by radio)."""

    kind: Literal[CASE_STEPS] = Field(description=" | ".join(CASE_STEPS))
    reason: str = Field(min_length=1, max_length=500, description="why")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        return _multiline_text(v)


class CaseNoteRequest(CaseWrite):
    """``POST /api/cases/{id}/notes``: a note in the case's history."""

    text: str = Field(min_length=1, max_length=1000, description="the note")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _multiline_text(v)


class CaseAttachmentRequest(CaseWrite):
    """``POST /api/cases/{id}/attachments``: a link to a photo or document kept elsewhere."""

    url: str = Field(min_length=1, max_length=MAX_URL, description="an http:// or https:// URL")

    @field_validator("url")
    @classmethod
    def _web_url(cls, v: str) -> str:
        v = v.strip()
        if not v.isprintable() or " " in v:
            raise ValueError("must be a URL without spaces or control characters")
        try:
            parts = urlsplit(v)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v


class UnitTaskAnswer(BaseModel):
    """``POST /api/units/{unit}/tasks/{case}/status``: a field unit answers its task."""

    status: Literal[UNIT_ANSWERS] = Field(description=" | ".join(UNIT_ANSWERS))
    note: str = Field(default="", max_length=500, description="optional note, kept in the case's history")

    @field_validator("note")
    @classmethod
    def _note(cls, v: str) -> str:
        return _multiline_text(v) if v.strip() else ""


# ---------------------------------------------------------------- base map labels and legend (issue 18)
class MapLabel(BaseModel):
    """One map label of ``GET /api/basemap/labels``."""

    id: str = Field(description="<kind>:<n>, numbered most important first")
    kind: Literal["road", "place", "poi", "metro", "water", "district"]
    name: str = Field(description="the name in the data: Chinese where it has one")
    name_en: str | None = Field(description="the English name, null if the data has none")
    x: float = Field(description="easting in the grid CRS [m]")
    y: float = Field(description="northing in the grid CRS [m]")
    angle_deg: float = Field(description="text rotation, degrees counter-clockwise from east (maths), -90..90; "
                                         "0 horizontal; along the line for roads and rivers")
    rank: int = Field(description="importance, 1 highest: districts and places 1, major roads and rivers 2, metro "
                                  "and points of interest 3, minor roads 4, paths 5")
    length_m: float | None = Field(description="roads and rivers: length of the named line the label is on [m]")


class MapLabels(BaseModel):
    """``GET /api/basemap/labels``."""

    crs: str = Field(description="the grid CRS of x and y, e.g. EPSG:4549")
    labels: list[MapLabel]


class LegendItem(BaseModel):
    """One colour the base map paints."""

    key: str = Field(description="ground, water, road_<class>, building_h<k> or building")
    name: str = Field(description="Chinese name")
    name_en: str
    colour: str = Field(description="#rrggbb")
    shape: Literal["fill", "line"]


class BasemapLegend(BaseModel):
    """``GET /api/basemap/legend``: every colour of the base map, in drawing order."""

    items: list[LegendItem]


# ---------------------------------------------------------------- buildings (issue 18)
class HazardRisk(BaseModel):
    """The worst level of one hazard in a building's cells."""

    level: int = Field(description="0 none, 1 blue, 2 yellow, 3 orange, 4 red; -1 no data")


class CrowdRisk(HazardRisk):
    """Crowd in a building's cells."""

    density_max: float | None = Field(description="highest crowd density [person m-2]; null without data")


class FloodRisk(HazardRisk):
    """Flood in a building's cells."""

    depth_max_m: float | None = Field(description="deepest water [m]; null without data")


class BuildingRisk(BaseModel):
    """The live levels in and around a building's cells (the last tick's level layers)."""

    level: int = Field(description="overall level (layer level): 0-4, -1 no data")
    crowd: CrowdRisk
    flood: FloodRisk
    traffic: HazardRisk
    ring_m: float = Field(description="the risk is read over the building's cells and those within this [m]")


class BuildingRecord(BaseModel):
    """``GET /api/buildings/{id}``: a building's BIM record and the risk in its cells."""

    id: str
    name: str | None = Field(description="the name in the source data (Chinese where it has one)")
    name_en: str | None = Field(description="English name, null if the source has none")
    use: str | None
    floors: float | None = Field(description="storeys (given, or estimated from the height)")
    height_m: float | None
    floor_area_m2: float | None = Field(description="gross floor area [m2]")
    occupancy: float | None = Field(description="design-load estimate of how many people it can hold [person], "
                                                "not a count")
    cells: int = Field(description="grid cells its footprint covers")
    centroid: tuple[float, float] | None = Field(description="[lon, lat] of the footprint's centroid (CGCS2000)")
    risk: BuildingRisk
    t: float | None = Field(description="time of the last tick the risk is of [unix s]; null before the first")


# ---------------------------------------------------------------- alert history (issue 18)
class TimelineEntry(BaseModel):
    """One step of an alert's timeline."""

    t: float | None = Field(description="[unix s]")
    kind: Literal["raised", "level", "updated", "acknowledged", "on_scene", "cancelled"]
    level: int | None = Field(description="the alert's level after the step (1-4)")
    actor: str | None = Field(description="twin for the twin's own messages, else the operator or unit")
    text: str = Field(description="a short sentence, Chinese · English")


class HistoryAlert(BaseModel):
    """One alert of ``GET /api/alerts/history``."""

    model_config = ConfigDict(populate_by_name=True)

    identifier: str
    hazard: str
    level: int = Field(description="the highest level it reached")
    state: Literal["active", "cancelled"]
    raised_at: float | None
    cancelled_at: float | None
    place: str | None = Field(description="its operational unit's key while active, else null")
    place_name: str | None = Field(description="short English name of its place (the English areaDesc)")
    area_desc: str | None = Field(alias="areaDesc", description="the area description of its last message (English)")
    timeline: list[TimelineEntry]


class AlertHistory(BaseModel):
    """``GET /api/alerts/history``: the alerts that were active at some time between ``since`` and ``until``."""

    since: float | None = Field(description="[unix s]")
    until: float | None = Field(description="[unix s]; the last tick when not given")
    truncated: bool = Field(description="more alerts matched than the newest 500 listed")
    alerts: list[HistoryAlert]


# ---------------------------------------------------------------- vital signs and frames (issue 18)
class Indicator(BaseModel):
    """One indicator of a node (docs/contract/http.md, "Vital signs")."""

    model_config = ConfigDict(extra="allow")

    value: float | None
    unit: str
    level: int = Field(description="0 none, 1 blue, 2 yellow, 3 orange, 4 red; -1 no data")
    trend: float | None = Field(description="value now minus value about 1 h ago; null without history")
    trend_arrow: str = Field(description="↑, ↓, → or empty")
    detail: dict


class IndicatorNode(BaseModel):
    """One node of the management tree with its indicators."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="city, district:<adcode>, street:<slug> or unit:<code>")
    level: str = Field(description="city, district, street or unit")
    name: str | None
    name_en: str | None
    parent: str | None
    indicators: dict[str, Indicator] = Field(description="people, water, traffic, alerts, cases, sensors, units")


class Indicators(BaseModel):
    """``GET /api/indicators``."""

    model_config = ConfigDict(extra="allow")

    t: float | None = Field(description="time of the tick the values are of [unix s]; null before any")
    level: str
    nodes: list[IndicatorNode]


class IndicatorSeries(BaseModel):
    """One indicator's stored values, oldest first."""

    unit: str
    points: list[list[float | int | None]] = Field(description="[[t, value, level], ...]")


class IndicatorHistory(BaseModel):
    """``GET /api/indicators/history``."""

    model_config = ConfigDict(extra="allow")

    node: str
    since: float | None
    until: float | None
    series: dict[str, IndicatorSeries]


class Frames(BaseModel):
    """``GET /api/frames``: the stored level frames of the last hour."""

    names: list[str] = Field(description="the level layers stored: level, level_crowd, level_flood, level_traffic")
    times: list[float] = Field(description="their times, oldest first [unix s]")
