"""GeoJSON of alerts and field units (RFC 7946: WGS84 lon/lat; CGCS2000 is taken as the same frame).

An alert's geometry is a MultiPolygon from its CAP ``area.polygon`` rings (CAP writes
``lat,lon`` pairs; GeoJSON wants ``[lon, lat]``), so the map shows exactly the area that was
published. Its properties carry the CAP essentials plus who acknowledged it and which units
are on scene. Texts come from the message's English info block (``en-US``, `twin.alerting.cap.info_block`), with
the Chinese headline, event and area beside them (``headline_zh``, ``event_zh``, ``area_desc_zh``; None for a
message without a ``zh-CN`` block). An active alert also carries its live value, peak, trend, 30-minute history and
whether its delivery is suppressed (`live_props`, issue 16).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from models.hazards import hazard as hazard_spec
from twin.alerting import cap
from twin.district.layers import LEVEL_NAMES

LEVEL_OF_COLOUR = {colour: level for level, colour in cap.LEVEL_COLOUR.items()}
LEVEL_HEX = {-1: "#808080", 0: "#00000000", 1: "#1e64dc", 2: "#ffd700", 3: "#ff8000", 4: "#dc1818"}
"""Display colours of the levels: China's warning colours blue, yellow, orange and red."""


def finite(value: Any) -> Any:
    """A JSON-safe number: NaN and infinities become None, numpy scalars plain Python."""
    if value is None or isinstance(value, bool | str):
        return value
    value = float(value) if not isinstance(value, int) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def iso_time(t: float | None) -> str | None:
    """ISO 8601 UTC text of a unix time [s], or None."""
    if t is None or not math.isfinite(t):
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ring_lonlat(polygon: str) -> list[list[float]]:
    """A CAP polygon (``lat,lon`` pairs, space-separated) as a GeoJSON ring of ``[lon, lat]``."""
    ring = []
    for pair in polygon.split():
        lat, lon = (float(v) for v in pair.split(","))
        ring.append([lon, lat])
    return ring


def _info(message: dict, language: str = "en-US") -> dict:
    """The message's info block in ``language`` (`twin.alerting.cap.info_block`), {} if it has none."""
    return cap.info_block(message, language) if message.get("info") else {}


def _zh_info(message: dict) -> dict:
    """The message's ``zh-CN`` info block, {} if it has none (a message of before issue 16)."""
    info = _info(message, "zh-CN")
    return info if info.get("language") == "zh-CN" else {}


def area_geometry(message: dict) -> dict | None:
    """MultiPolygon of every polygon in the areas of the message's English info (both languages' blocks have the
    same areas), or None if it has none."""
    polys = [[ring_lonlat(p)] for area in _info(message).get("area", []) for p in area.get("polygon", [])]
    return {"type": "MultiPolygon", "coordinates": polys} if polys else None


def parameters(message: dict) -> dict[str, str]:
    """The English info's CAP parameters as a mapping (repeated names joined by ``; ``); both blocks have the same."""
    out: dict[str, str] = {}
    for p in _info(message).get("parameter", []):
        name = p["valueName"]
        out[name] = f"{out[name]}; {p['value']}" if name in out else p["value"]
    return out


def _info_props(message: dict) -> dict[str, Any]:
    info = _info(message)
    zh = _zh_info(message)
    area = (info.get("area") or [{}])[0]
    zh_area = (zh.get("area") or [{}])[0]
    return {"event": info.get("event"), "category": info.get("category"), "severity": info.get("severity"),
            "urgency": info.get("urgency"), "certainty": info.get("certainty"), "headline": info.get("headline"),
            "headline_zh": zh.get("headline"), "event_zh": zh.get("event"),
            "description": info.get("description"), "instruction": info.get("instruction"),
            "onset": info.get("onset"), "expires": info.get("expires"), "area_desc": area.get("areaDesc"),
            "area_desc_zh": zh_area.get("areaDesc"), "beidou": [g["value"] for g in area.get("geocode", [])]}


_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def _number(text: str | None) -> float | None:
    """The leading number of a CAP parameter value such as ``4.60 person/m2``, None if there is none."""
    match = _NUMBER.match(text or "")
    return finite(float(match[1])) if match else None


def _published_values(hazard: str, params: dict[str, str]) -> dict[str, Any]:
    """The value fields of an alert without live values (cancelled, or the twin has none): from the CAP parameters
    of its last message (``value`` and ``peakValue``, else the hazard's evidence parameter), no trend or history."""
    try:
        spec = hazard_spec(hazard)
    except KeyError:
        spec = None
    evidence = params.get(spec.evidence) if spec else None
    value = _number(params.get("value", evidence))
    return {"value": value, "unit": spec.unit if spec else None, "peak": _number(params.get("peakValue", evidence)),
            "peak_at": None, "trend": None, "trend_word": None, "trend_arrow": None, "history": [], "devices": [],
            "place": None, "place_name": None}


def _suppressed(entry: Any) -> dict[str, str] | None:
    """``{by, id, reason}`` of a suppressed alert (interface 7 of issue 16), None if it is delivered."""
    if not isinstance(entry, dict):
        return None
    return {"by": str(entry.get("by", "")), "id": str(entry.get("id", "")), "reason": str(entry.get("reason", ""))}


def live_props(hazard: str, params: dict[str, str], live: dict | None) -> dict[str, Any]:
    """The value fields of an alert Feature (issue 16): ``value``, ``unit``, ``peak``, ``peak_at`` [unix s],
    ``trend`` [unit/min], ``trend_word``, ``trend_arrow``, ``history`` [[t, value], ...], ``devices``, ``place`` and
    ``place_name`` (its silence labels, `twin.alerting.labels`) and ``suppressed``, from the twin's live state of the
    alert (``LiveQuery.alert_live()[id]``, values of `twin.alerting.values.AlertValues.snapshot`), or from its last
    message's CAP parameters when there is none."""
    if not live:
        return {**_published_values(hazard, params), "suppressed": None}
    history = [[finite(t), finite(v)] for t, v in live.get("history") or []]
    return {"value": finite(live.get("value")), "unit": live.get("unit"), "peak": finite(live.get("peak")),
            "peak_at": finite(live.get("peak_at")), "trend": finite(live.get("trend")),
            "trend_word": live.get("trend_word"), "trend_arrow": live.get("trend_arrow"),
            "history": [p for p in history if None not in p], "devices": list(live.get("devices") or []),
            "place": live.get("place") or None, "place_name": live.get("place_name") or None,
            "suppressed": _suppressed(live.get("suppressed"))}


def alert_feature(row: dict, acks: list[dict], arrivals: list[dict], live: dict | None = None) -> dict:
    """One alert as a GeoJSON Feature.

    ``row`` has ``identifier, hazard, state, raised_at, updated_at, cancelled_at, message``
    (a `twin.alerting.store.Store.alerts` row, or the same built from a tick's event); the level is read
    from the message's ``warningLevel``, so it is the level that was published. ``live`` is the twin's live
    state of an active alert (`live_props`; ignored for a cancelled one), None for none.
    """
    message = row["message"]
    params = parameters(message)
    level = LEVEL_OF_COLOUR.get(params.get("warningLevel", ""), int(row.get("level") or 0))
    props = {
        "identifier": row["identifier"], "hazard": row["hazard"], "level": level,
        "level_name": LEVEL_NAMES.get(level, str(level)), "colour": LEVEL_HEX.get(level),
        "state": row["state"], "msg_type": message.get("msgType"), "message_id": message.get("identifier"),
        "status": message.get("status"), "sent": message.get("sent"),
        "raised_at": finite(row.get("raised_at")), "raised_at_iso": iso_time(row.get("raised_at")),
        "updated_at": finite(row.get("updated_at")), "cancelled_at": finite(row.get("cancelled_at")),
        **_info_props(message),
        "cells": int(params.get("cells", 0) or 0), "area_m2": float(params.get("areaM2", 0) or 0),
        "parameters": params,
        "acknowledged_by": list(dict.fromkeys(a["actor"] for a in acks if a["status"] == "ack")),
        "acks": [{**a, "t": finite(a["t"])} for a in acks],
        "units_on_scene": [a["unit_id"] for a in arrivals],
        "arrivals": [{k: finite(v) if k != "unit_id" else v for k, v in a.items()} for a in arrivals],
        **live_props(row["hazard"], params, live if row["state"] == "active" else None),
    }
    return {"type": "Feature", "id": row["identifier"], "geometry": area_geometry(message), "properties": props}


def entity_feature(e: dict) -> dict:
    """A vehicle or field unit (a `twin.api.view.TwinView.entities` row) as a GeoJSON Point Feature."""
    props = {"id": e["id"], "kind": e["kind"], "unit_type": e.get("unit_type") or None, "t": finite(e["t"]),
             "time": iso_time(e["t"]), "speed_kmh": finite(e["speed_kmh"]), "course_deg": finite(e["course_deg"]),
             "row": int(e["row"]), "col": int(e["col"]), "alerts": e.get("alerts", []),
             "on_scene": e.get("on_scene", [])}
    geometry = {"type": "Point", "coordinates": [round(e["lon"], 7), round(e["lat"], 7)]}
    return {"type": "Feature", "id": e["id"], "geometry": geometry, "properties": props}


def collection(features: list[dict], **members: Any) -> dict:
    """A FeatureCollection (extra foreign members, e.g. ``t``, at the top level)."""
    return {"type": "FeatureCollection", **members, "features": features}
