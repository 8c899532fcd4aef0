"""The CAP 1.2 messages of a city alert: composed from its members, and its Cancel (docs/guides/city-tier.md).

`compose_city` writes the next message (Alert, then ``{id}.update{n}``) of a city alert over its member district
alerts; `cancel_city` its Cancel (``{id}.cancel{n}``). Both carry both ``info`` blocks, ``zh-CN`` then ``en-US``
(`twin.alerting.cap.LANGUAGES`), valid by `twin.alerting.cap.problems`:

- the shared elements (category, responseType, urgency, severity, certainty, contact) and each language's event and
  instruction are those of the *lead* member, the highest level (1 blue ... 4 red), the earliest on a tie;
- ``onset`` is the earliest member onset, ``expires`` the latest member expiry;
- the headline is the hazard's template (`models.hazards.REGISTRY`) with the highest colour and the members'
  places (`member_place`; up to `MAX_PLACES`, then ``and n more`` / ``等n处``);
- the description gives the level, its grade (blue IV ... red I), the districts, the member count and the union's
  area [m2]; the parameters ``warningLevel``, ``hazard``, ``districts``, ``members``, ``areaM2`` [m2];
- one ``area``: the districts' names and the members' area descriptions, the union as CAP polygons
  (`twin.city.capgeometry.cap_outline`), and the members' Beidou grid codes when at most `MAX_GEOCODES`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from models.hazards import REGISTRY
from twin.alerting import cap
from twin.city.capgeometry import cap_outline
from twin.city.cityalert import DEFAULT_SENDER, CityAlert, CityContext
from twin.city.districtalert import DistrictAlert, cap_seconds
from twin.district.grid import DEFAULT_CRS

MAX_PLACES = 3
"""Places named in a headline; more are counted (``and 2 more``)."""
MAX_GEOCODES = 32
"""The member geocodes are listed when there are at most this many (the district profile's bound)."""
_CLEARED = {"zh-CN": "解除：", "en-US": "Cleared: "}


def _lead(group: list[DistrictAlert]) -> DistrictAlert:
    """The member whose texts the city alert takes: the highest level, the earliest on a tie."""
    return min(group, key=lambda a: (-a.level, a.order))


def _headline_pattern(template: str) -> re.Pattern[str]:
    text = re.escape(template).replace(r"\{colour\}", ".+?").replace(r"\{place\}", "(?P<place>.+?)")
    return re.compile(f"^{text}(?:[:：].*)?$")


def member_place(alert: DistrictAlert, language: str, context: CityContext) -> str:
    """The place a member's headline names (by its hazard's headline template), else its district's name."""
    en, zh = context.names(alert.district)
    fallback = en if language.startswith("en") else zh
    spec = REGISTRY.get(alert.hazard)
    if spec is None:
        return fallback
    headline = str(cap.info_block(alert.message, language).get("headline") or "")
    for prefix in _CLEARED.values():
        headline = headline.removeprefix(prefix)
    match = _headline_pattern(spec.headline_en if language.startswith("en") else spec.headline_zh).match(headline)
    return match.group("place").strip() if match and match.group("place").strip() else fallback


def _places(group: list[DistrictAlert], language: str, context: CityContext) -> str:
    en = language.startswith("en")
    names: list[str] = []
    for a in group:
        place = member_place(a, language, context)
        district = context.names(a.district)[0 if en else 1]
        label = place if place == district else (f"{place} ({district})" if en else f"{place}（{district}）")
        if label not in names:
            names.append(label)
    shown, more = names[:MAX_PLACES], len(names) - MAX_PLACES
    if en:
        text = ", ".join(shown[:-1]) + (" and " if len(shown) > 1 else "") + shown[-1]
        return text + (f" and {more} more" if more > 0 else "")
    return "、".join(shown) + (f"等{len(names)}处" if more > 0 else "")


def _headline(city: CityAlert, group: list[DistrictAlert], language: str, context: CityContext,
              event: str) -> str:
    spec = REGISTRY.get(city.hazard)
    level = min(max(city.level, 1), 4)
    place = _places(group, language, context)
    if language.startswith("en"):
        colour = cap.LEVEL_COLOUR[level].capitalize()
        return spec.headline_en.format(colour=colour, place=place) if spec else f"{colour} {event}, {place}"
    colour = cap.LEVEL_COLOUR_ZH[level]
    return spec.headline_zh.format(colour=colour, place=place) if spec else f"{place}{event}{colour}"


def _description(city: CityAlert, group: list[DistrictAlert], language: str, context: CityContext,
                 event: str) -> str:
    level = min(max(city.level, 1), 4)
    grade = {1: "IV", 2: "III", 3: "II", 4: "I"}[level]
    area_m2 = round(city.area.area)
    if language.startswith("en"):
        names = " and ".join(context.names(d)[0] for d in city.districts)
        return (f"{event} at level {cap.LEVEL_COLOUR[level]} ({grade}) across {names}: {len(group)} district "
                f"alert{'s' if len(group) != 1 else ''} over {area_m2} m2.")
    names = "、".join(context.names(d)[1] for d in city.districts)
    return (f"{names}{event}：{cap.LEVEL_COLOUR_ZH[level]}（{grade}级），合并{len(group)}个区级预警，"
            f"影响面积约{area_m2}平方米。")


def _area_block(city: CityAlert, group: list[DistrictAlert], context: CityContext, crs: str) -> dict:
    names = ", ".join(context.names(d)[0] for d in city.districts)
    names_zh = "、".join(context.names(d)[1] for d in city.districts)
    descs = [str(((cap.info_block(a.message, "en-US").get("area") or [{}])[0] or {}).get("areaDesc", ""))
             for a in group]
    area: dict = {"areaDesc": f"{names} ({names_zh}): " + " | ".join(d for d in descs if d)}
    polygons = cap_outline(city.area, crs) if not city.area.is_empty else []
    if polygons:
        area["polygon"] = polygons
    codes = sorted({g["value"] for a in group for ar in cap.info_block(a.message, "en-US").get("area", [])
                    for g in ar.get("geocode", []) if isinstance(g, dict) and "value" in g})
    if 0 < len(codes) <= MAX_GEOCODES:
        area["geocode"] = cap.name_values([("BeidouGridCode", c) for c in codes])
    return area


def _earliest(group: list[DistrictAlert], key: str, latest: bool = False) -> str | None:
    """The earliest (``latest``: the latest) CAP dateTime ``key`` of the members' info blocks, as written."""
    times = [(t, str(v)) for a in group if (v := cap.info_block(a.message, "en-US").get(key))
             if (t := cap_seconds(v)) is not None]
    if not times:
        return None
    return (max(times) if latest else min(times))[1]


def compose_city(city: CityAlert, group: list[DistrictAlert], now: float, context: CityContext,
                 references: list[str], crs: str = DEFAULT_CRS) -> dict:
    """The next message (Alert, or Update ``{id}.update{n}``) of a city alert over its members ``group``; bumps
    ``city.messages`` and sets ``city.last``.

    The shared elements (category, responseType, urgency, severity, certainty, contact) and each language's event
    and instruction are the lead member's (`_lead`); onset is the earliest member onset, expires the latest."""
    lead = _lead(group)
    shared = cap.info_block(lead.message, "en-US")
    onset, expires = _earliest(group, "onset"), _earliest(group, "expires", latest=True)
    area = _area_block(city, group, context, crs)
    params = cap.name_values([("warningLevel", cap.LEVEL_COLOUR.get(city.level, "unknown")),
                              ("hazard", city.hazard), ("districts", " ".join(city.districts)),
                              ("members", len(group)), ("areaM2", round(city.area.area))])
    infos = []
    for language in cap.LANGUAGES:
        block = cap.info_block(lead.message, language)
        event = str(block.get("event") or shared.get("event") or city.hazard)
        info = {"language": language, "category": shared.get("category", "Other"), "event": event}
        info.update({k: shared[k] for k in ("responseType", "urgency", "severity", "certainty") if k in shared})
        info.update({k: v for k, v in (("onset", onset), ("expires", expires)) if v is not None})
        info["senderName"] = context.sender_name
        info["headline"] = _headline(city, group, language, context, event)
        info["description"] = _description(city, group, language, context, event)
        if block.get("instruction"):
            info["instruction"] = block["instruction"]
        if shared.get("contact"):
            info["contact"] = shared["contact"]
        info["parameter"] = params
        info["area"] = [area]
        infos.append(info)
    n = city.messages
    message = {"identifier": city.identifier if n == 0 else f"{city.identifier}.update{n}",
               "sender": context.sender, "sent": cap.cap_time(now), "status": lead.message.get("status", "Actual"),
               "msgType": "Alert" if n == 0 else "Update", "scope": "Public",
               "references": " ".join(dict.fromkeys(references)), "info": infos}
    city.messages, city.last = n + 1, message
    return message


def cancel_city(city: CityAlert, now: float, why: Mapping[str, str], left: list[str]) -> dict:
    """The Cancel ``{id}.cancel{n}`` of a city alert: its last message with responseType AllClear, urgency Past,
    ``解除：`` / ``Cleared: `` headlines, ``why`` as description (by language), no instruction; references its last
    message and ``left`` (the members' Cancels)."""
    last = city.last or {}
    infos = []
    for info in last.get("info") or []:
        language = info.get("language", "en-US")
        block = {k: v for k, v in info.items() if k != "instruction"}
        block.update(responseType="AllClear", urgency="Past",
                     headline=_CLEARED.get(language, "Cleared: ") + str(info.get("headline", "")),
                     description=why.get(language, why.get("en-US", "")))
        infos.append(block)
    message = {"identifier": f"{city.identifier}.cancel{city.messages}", "sender": last.get("sender", DEFAULT_SENDER),
               "sent": cap.cap_time(now), "status": last.get("status", "Actual"), "msgType": "Cancel",
               "scope": "Public",
               "references": " ".join(dict.fromkeys(([cap.reference(last)] if last else []) + left)), "info": infos}
    city.messages, city.last = city.messages + 1, message
    return message
