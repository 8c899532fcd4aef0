"""GeoJSON of alerts and field units (RFC 7946: WGS84 lon/lat; CGCS2000 is taken as the same frame).

An alert's geometry is a MultiPolygon from its CAP ``area.polygon`` rings (CAP writes
``lat,lon`` pairs; GeoJSON wants ``[lon, lat]``), so the map shows exactly the area that was
published. Its properties carry the CAP essentials plus who acknowledged it and which units
are on scene.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

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


def area_geometry(message: dict) -> dict | None:
    """MultiPolygon of every polygon in the message's areas, or None if it has none."""
    polys = [[ring_lonlat(p)] for info in message.get("info", []) for area in info.get("area", [])
             for p in area.get("polygon", [])]
    return {"type": "MultiPolygon", "coordinates": polys} if polys else None


def parameters(message: dict) -> dict[str, str]:
    """The first info's CAP parameters as a mapping (repeated names joined by ``; ``)."""
    out: dict[str, str] = {}
    for p in (message.get("info") or [{}])[0].get("parameter", []):
        name = p["valueName"]
        out[name] = f"{out[name]}; {p['value']}" if name in out else p["value"]
    return out


def _info_props(message: dict) -> dict[str, Any]:
    info = (message.get("info") or [{}])[0]
    area = (info.get("area") or [{}])[0]
    return {"event": info.get("event"), "category": info.get("category"), "severity": info.get("severity"),
            "urgency": info.get("urgency"), "certainty": info.get("certainty"), "headline": info.get("headline"),
            "description": info.get("description"), "instruction": info.get("instruction"),
            "onset": info.get("onset"), "expires": info.get("expires"), "area_desc": area.get("areaDesc"),
            "beidou": [g["value"] for g in area.get("geocode", [])]}


def alert_feature(row: dict, acks: list[dict], arrivals: list[dict]) -> dict:
    """One alert as a GeoJSON Feature.

    ``row`` has ``identifier, hazard, state, raised_at, updated_at, cancelled_at, message``
    (a `twin.alerting.store.Store.alerts` row, or the same built from a tick's event); the level is read
    from the message's ``warningLevel``, so it is the level that was published.
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
