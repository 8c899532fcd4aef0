"""A district alert as the city merger reads it: one checked CAP message of a district twin (docs/guides/city-tier.md).

Every district twin publishes its alerts as CAP 1.2 JSON (docs/contract/cap.md) on ``city/alerts/{identifier}``.
`load_message` checks that a payload is such a message; `district_alert` reads what the merger needs from it:

- the alert's *key*, its first identifier (``citytwin.{district}.{hazard}.{YYYYMMDDTHHMMSSZ}.{nnnnn}``), from any
  of its message identifiers (``.update{n}``, ``.cancel{n}``, ``.ack{n}`` stripped);
- the district (partition key, e.g. ``310101``) from the identifier, else from a sender ``twin.<district>@...``;
- the hazard (``hazard`` parameter, else the identifier), the level (``warningLevel`` colour, else the CAP
  severity: 1 blue ... 4 red, 0 unknown);
- the raise time [unix s, UTC]: from the identifier, else ``onset``, else ``sent``;
- the area, projected to metres (`twin.city.capgeometry.cap_area`).

A message the merger cannot use raises `RejectedError` with one of `REASONS`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass

import shapely

from twin.alerting import cap
from twin.city.capgeometry import cap_area
from twin.district.grid import DEFAULT_CRS

REASONS = ("not_json", "not_cap", "no_district", "no_hazard", "bad_area", "too_many")
"""Why a district message was refused (`twin.city.merge.AlertMerger.rejected`)."""
_SUFFIX = re.compile(r"\.(update|cancel|ack)\d+$")
_RAISED = "%Y%m%dT%H%M%SZ"
_ID_OK = re.compile(r"^[^\s,<&]{1,512}$")
_COLOUR_LEVEL = {colour: level for level, colour in cap.LEVEL_COLOUR.items()}
_SEVERITY_LEVEL = {severity: level for level, severity in cap.LEVEL_SEVERITY.items()}


class RejectedError(ValueError):
    """A district message the merger cannot use; ``reason`` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def alert_key(identifier: str) -> str:
    """The alert's first identifier (its MQTT topic id) from any of its message identifiers."""
    return _SUFFIX.sub("", identifier)


def raised_time(key: str) -> float | None:
    """Raise time [unix s] from an identifier ``citytwin.{district}.{hazard}.{YYYYMMDDTHHMMSSZ}.{nnnnn}``."""
    parts = key.split(".")
    if len(parts) < 5:
        return None
    try:
        return dt.datetime.strptime(parts[3], _RAISED).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def cap_seconds(text: object) -> float | None:
    """A CAP dateTime as unix time [s]; None if it is not one."""
    try:
        return dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, eq=False)
class DistrictAlert:
    """One active district alert as the merger holds it."""

    key: str
    """The alert's first identifier (its topic id)."""
    district: str
    """The district twin that raised it (partition key, e.g. ``310101``)."""
    hazard: str
    level: int
    """1 blue ... 4 red (0 unknown)."""
    raised: float
    """Raise time [unix s] (identifier, else ``onset``, else ``sent``; inf when none)."""
    area: shapely.Geometry
    """The CAP area in the projected CRS [m] (empty when the message has none)."""
    message: dict

    @property
    def order(self) -> tuple[float, str]:
        """Sort key: earliest raised first, then by identifier."""
        return (self.raised, self.key)

    @property
    def reference(self) -> str:
        """``sender,identifier,sent`` of its current message."""
        return cap.reference(self.message)


def load_message(payload: bytes | str | dict) -> dict:
    """A CAP JSON message from bytes, text or a dict; `RejectedError` (``not_json``/``not_cap``) otherwise."""
    if isinstance(payload, dict):
        message = payload
    else:
        try:
            message = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RejectedError("not_json", f"not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise RejectedError("not_cap", "a CAP message is a JSON object")
    identifier = message.get("identifier")
    if not isinstance(identifier, str) or not _ID_OK.match(identifier):
        raise RejectedError("not_cap", f"bad or missing identifier {str(identifier)[:60]!r}")
    if message.get("msgType") not in ("Alert", "Update", "Cancel"):
        raise RejectedError("not_cap", f"msgType {str(message.get('msgType'))[:20]!r} is not Alert, Update or Cancel")
    for key in ("sender", "sent"):
        if not isinstance(message.get(key), str) or not message[key]:
            raise RejectedError("not_cap", f"{key} is missing")
    if not isinstance(message.get("info"), list) or not message["info"] or not all(
            isinstance(i, dict) for i in message["info"]):
        raise RejectedError("not_cap", "no info block")
    return message


def parameter(info: dict, name: str) -> str | None:
    """The value of an info block's CAP parameter ``name`` (as text); None when it has none."""
    for item in info.get("parameter") or []:
        if isinstance(item, dict) and item.get("valueName") == name:
            return str(item.get("value"))
    return None


def _district_of(key: str, sender: str) -> str:
    parts = key.split(".")
    if len(parts) >= 5 and parts[0] == "citytwin" and parts[1]:
        return parts[1]
    match = re.match(r"^twin\.([^@]+)@", sender)
    if match:
        return match.group(1)
    raise RejectedError("no_district", f"cannot tell the district of {key!r} (from the identifier, or a sender "
                                       "twin.<district>@...)")


def alert_level(info: dict) -> int:
    """An info block's level, 1 blue ... 4 red: its ``warningLevel`` colour, else its severity; 0 unknown."""
    colour = parameter(info, "warningLevel")
    return _COLOUR_LEVEL.get(colour or "", _SEVERITY_LEVEL.get(str(info.get("severity")), 0))


def district_alert(message: dict, crs: str = DEFAULT_CRS) -> DistrictAlert:
    """The merger's view of a checked CAP message (`load_message`); `RejectedError` when it cannot be used."""
    key = alert_key(message["identifier"])
    district = _district_of(key, message["sender"])
    info = cap.info_block(message, "en-US")
    parts = key.split(".")
    hazard = parameter(info, "hazard") or (parts[2] if len(parts) >= 5 and parts[0] == "citytwin" else "")
    if not hazard:
        raise RejectedError("no_hazard", f"{key}: no hazard parameter and none in the identifier")
    try:
        area = cap_area(info, crs)
    except (ValueError, TypeError) as exc:
        raise RejectedError("bad_area", f"{key}: {exc}") from None
    raised = next((t for t in (raised_time(key), cap_seconds(info.get("onset")), cap_seconds(message["sent"]))
                   if t is not None), math.inf)
    return DistrictAlert(key, district, hazard, alert_level(info), raised, area, message)
