"""CAP 1.2 messages (OASIS Common Alerting Protocol): JSON as in docs/contract/mqtt.md 3.1, XML, and checks.

The JSON form uses CAP's element names (``identifier, sender, sent, status, msgType, scope,
restriction, note, references, info[{language, category, event, responseType, urgency, severity,
certainty, onset, expires, senderName, headline, description, instruction, web, contact,
parameter[], area[{areaDesc, polygon[], geocode[]}]}]``), one value per element; ``parameter``
and ``geocode`` are lists of ``{"valueName", "value"}``. Every message of the twin has two
``info`` blocks, ``zh-CN`` then ``en-US`` (`info_block` picks one). `to_xml` writes the same
message as CAP 1.2 XML in the standard's namespace, elements in the schema's order. `problems`
checks a message against the standard's rules and this profile's (docs/contract/cap.md).

Reference: OASIS, Common Alerting Protocol Version 1.2, 1 July 2010,
http://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2-os.html
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
SHANGHAI_TZ = dt.timezone(dt.timedelta(hours=8))

LEVEL_COLOUR = {1: "blue", 2: "yellow", 3: "orange", 4: "red"}
LEVEL_SEVERITY = {1: "Minor", 2: "Moderate", 3: "Severe", 4: "Extreme"}
"""docs/contract/mqtt.md 3.1: warning colour -> CAP severity (China's four-level warnings, IV blue ... I red)."""
LEVEL_URGENCY = {1: "Future", 2: "Expected", 3: "Immediate", 4: "Immediate"}

STATUS = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPE = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPE = ("Public", "Restricted", "Private")
CATEGORY = ("Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
            "CBRNE", "Other")
URGENCY = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITY = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTY = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
RESPONSE_TYPE = ("Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None")
LEVEL_COLOUR_ZH = {1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色"}
"""The warning colours in Chinese, as in 蓝色预警 ... 红色预警 (GB/T 27962-2011 style four-colour warnings). [src]"""
LANGUAGES = ("zh-CN", "en-US")
"""The languages of every message's ``info`` blocks, in order (docs/contract/cap.md)."""
SHARED_INFO = ("category", "responseType", "urgency", "severity", "certainty", "effective", "onset", "expires",
               "senderName", "web", "contact", "parameter")
"""``info`` elements that are the same in every language of a message (this profile's rule)."""

ALERT_ORDER = ("identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
               "addresses", "code", "note", "references", "incidents", "info")
INFO_ORDER = ("language", "category", "event", "responseType", "urgency", "severity", "certainty", "audience",
              "eventCode", "effective", "onset", "expires", "senderName", "headline", "description",
              "instruction", "web", "contact", "parameter", "resource", "area")
AREA_ORDER = ("areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling")
REQUIRED_ALERT = ("identifier", "sender", "sent", "status", "msgType", "scope")
REQUIRED_INFO = ("category", "event", "urgency", "severity", "certainty")

_LANGUAGE_RE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
"""An RFC 3066 language tag (``zh-CN``, ``en-US``), as CAP 1.2's ``language`` requires."""
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
_BAD_ID = re.compile(r"[\s,<&]")


def cap_time(t: float, tz: dt.tzinfo = SHANGHAI_TZ) -> str:
    """CAP dateTime of a unix time [s]: whole seconds, numeric zone (``Z`` is not allowed)."""
    text = dt.datetime.fromtimestamp(int(t), tz).isoformat()
    return text.replace("+00:00", "-00:00")


def polygon_text(lonlat_ring: Sequence[tuple[float, float]]) -> str:
    """A CAP polygon: ``lat,lon`` pairs (WGS84, 5 decimals, ~1 m) separated by spaces, closed."""
    pairs = [f"{lat:.5f},{lon:.5f}" for lon, lat in lonlat_ring]
    if pairs and pairs[0] != pairs[-1]:
        pairs.append(pairs[0])
    return " ".join(pairs)


def reference(message: dict) -> str:
    """The ``sender,identifier,sent`` triple by which a later message refers to this one."""
    return f"{message['sender']},{message['identifier']},{message['sent']}"


def info_block(message: dict, language: str = "en-US") -> dict:
    """The ``info`` block of ``message`` in ``language`` (e.g. ``en-US``, ``zh-CN``), else its first block.

    Every message has two blocks, ``zh-CN`` first then ``en-US`` (docs/contract/cap.md); a block without a
    ``language`` is CAP's default, ``en-US``. A message without any ``info`` gives ValueError.
    """
    infos = message.get("info") or []
    if not infos:
        raise ValueError(f"CAP message {message.get('identifier', '?')!r} has no info block")
    for info in infos:
        if info.get("language", "en-US") == language:
            return info
    return infos[0]


def name_values(items: dict[str, object] | Iterable[tuple[str, object]]) -> list[dict[str, str]]:
    """CAP ``parameter``/``geocode`` entries from name/value pairs (a mapping or pairs)."""
    pairs = items.items() if isinstance(items, dict) else items
    return [{"valueName": str(k), "value": str(v)} for k, v in pairs]


# ---------------------------------------------------------------- XML
def _add(parent: ET.Element, tag: str, value) -> None:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    el.text = str(value)


def _add_pairs(parent: ET.Element, tag: str, pairs: list[dict]) -> None:
    for pair in pairs:
        el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
        _add(el, "valueName", pair["valueName"])
        _add(el, "value", pair["value"])


def _fill(parent: ET.Element, data: dict, order: tuple[str, ...], nested: dict) -> None:
    for key in order:
        if key not in data or data[key] in (None, "", []):
            continue
        value = data[key]
        if key in nested:
            for item in value:
                nested[key](ET.SubElement(parent, f"{{{CAP_NS}}}{key}"), item)
        elif key in ("parameter", "geocode", "eventCode"):
            _add_pairs(parent, key, value)
        elif isinstance(value, list):
            for v in value:
                _add(parent, key, v)
        else:
            _add(parent, key, value)


def _area(el: ET.Element, area: dict) -> None:
    _fill(el, area, AREA_ORDER, {})


def _info(el: ET.Element, info: dict) -> None:
    _fill(el, info, INFO_ORDER, {"area": _area})


def to_xml(message: dict) -> str:
    """The message as a CAP 1.2 XML document (UTF-8 text with an XML declaration)."""
    ET.register_namespace("", CAP_NS)
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _fill(root, message, ALERT_ORDER, {"info": _info})
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


# ---------------------------------------------------------------- checks
def _check_enum(problems: list[str], where: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        problems.append(f"{where} {value!r} is not one of {', '.join(allowed)}")


def _polygon_problems(where: str, text: str) -> list[str]:
    try:
        pairs = [tuple(float(v) for v in p.split(",")) for p in text.split()]
    except ValueError:
        return [f"{where} is not 'lat,lon' pairs"]
    out = []
    if len(pairs) < 4:
        out.append(f"{where} has {len(pairs)} points; a CAP polygon needs at least 4")
    if pairs and pairs[0] != pairs[-1]:
        out.append(f"{where} is not closed (first and last points differ)")
    if any(len(p) != 2 or not (-90 <= p[0] <= 90 and -180 <= p[1] <= 180) for p in pairs):
        out.append(f"{where} has a point that is not a WGS84 lat,lon pair")
    return out


def _info_problems(i: int, info: dict) -> list[str]:
    out: list[str] = []
    where = f"info[{i}]"
    out += [f"{where}.{k} is missing" for k in REQUIRED_INFO if not info.get(k)]
    _check_enum(out, f"{where}.category", info.get("category"), CATEGORY)
    _check_enum(out, f"{where}.urgency", info.get("urgency"), URGENCY)
    _check_enum(out, f"{where}.severity", info.get("severity"), SEVERITY)
    _check_enum(out, f"{where}.certainty", info.get("certainty"), CERTAINTY)
    if "language" in info and not _LANGUAGE_RE.match(str(info["language"])):
        out.append(f"{where}.language {info['language']!r} is not an RFC 3066 language code")
    response = info.get("responseType", [])
    for value in [response] if isinstance(response, str) else response:
        _check_enum(out, f"{where}.responseType", value, RESPONSE_TYPE)
    if info.get("web") and not _URI_RE.match(str(info["web"])):
        out.append(f"{where}.web {info['web']!r} is not a full absolute URI")
    for key in ("onset", "expires", "effective"):
        if key in info and not _TIME_RE.match(str(info[key])):
            out.append(f"{where}.{key} {info[key]!r} is not a CAP dateTime")
    for j, area in enumerate(info.get("area", [])):
        if not area.get("areaDesc"):
            out.append(f"{where}.area[{j}].areaDesc is missing")
        for k, poly in enumerate(area.get("polygon", [])):
            out += _polygon_problems(f"{where}.area[{j}].polygon[{k}]", poly)
    return out


def _scope_problems(message: dict) -> list[str]:
    scope = message.get("scope")
    if scope == "Restricted" and not str(message.get("restriction") or "").strip():
        return ["scope Restricted needs a restriction"]
    if scope != "Restricted" and message.get("restriction"):
        return [f"restriction is only for scope Restricted (scope is {scope!r})"]
    if scope == "Private" and not str(message.get("addresses") or "").strip():
        return ["scope Private needs addresses"]
    return []


def _geometry(info: dict) -> list:
    return [(a.get("polygon", []), a.get("circle", []), a.get("geocode", [])) for a in info.get("area", [])]


def _languages_problems(infos: list[dict]) -> list[str]:
    """This profile's rule for several ``info`` blocks: one per language, the same `SHARED_INFO` and area
    geometry in each (only the texts are translated)."""
    if len(infos) < 2:
        return []
    languages = [info.get("language", "en-US") for info in infos]
    out = [f"language {lang!r} has more than one info block" for lang in sorted(set(languages))
           if languages.count(lang) > 1]
    first = infos[0]
    for i, info in enumerate(infos[1:], 1):
        out += [f"info[{i}].{k} differs from info[0].{k}" for k in SHARED_INFO if info.get(k) != first.get(k)]
        if _geometry(info) != _geometry(first):
            out.append(f"info[{i}].area differs from info[0].area (polygons, circles and geocodes)")
    return out


def problems(message: dict) -> list[str]:
    """Everything in the message that breaks CAP 1.2's rules (empty when it is valid), and this profile's rules
    for several info blocks (`SHARED_INFO`)."""
    out = [f"{k} is missing" for k in REQUIRED_ALERT if not message.get(k)]
    for key in ("identifier", "sender"):
        if _BAD_ID.search(str(message.get(key, ""))):
            out.append(f"{key} must not contain spaces, commas, '<' or '&'")
    if not _TIME_RE.match(str(message.get("sent", ""))):
        out.append(f"sent {message.get('sent')!r} is not a CAP dateTime (no 'Z', no fractions)")
    _check_enum(out, "status", message.get("status"), STATUS)
    _check_enum(out, "msgType", message.get("msgType"), MSG_TYPE)
    _check_enum(out, "scope", message.get("scope"), SCOPE)
    out += _scope_problems(message)
    refs = str(message.get("references") or "").split()
    if message.get("msgType") in ("Update", "Cancel", "Ack", "Error") and not refs:
        out.append(f"a {message.get('msgType')} message must carry references")
    for ref in refs:
        parts = ref.split(",")
        if len(parts) != 3 or not _TIME_RE.match(parts[2]):
            out.append(f"reference {ref!r} is not sender,identifier,sent")
    for i, info in enumerate(message.get("info", [])):
        out += _info_problems(i, info)
    return out + _languages_problems(list(message.get("info", [])))
