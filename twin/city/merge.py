"""Alert merging across district borders: district CAP alerts in, city CAP alerts out (docs/guides/city-tier.md).

Every district twin publishes its alerts as CAP 1.2 JSON (docs/contract/cap.md) on ``city/alerts/{identifier}``.
`AlertMerger` keeps the active ones (a ``Cancel`` removes one) and groups them into **city alerts**:

- **Grouping.** Two district alerts are linked when they have the same hazard, come from different districts
  (partitions) and their areas lie within ``tolerance_m`` of each other (one cell, 10 m, by default; areas are the
  CAP polygons and circles, projected to metres in the grid CRS, EPSG:4549). A city alert is a connected group of
  linked alerts (`group_alerts`), so every active district alert is in exactly one city alert; a lone district
  alert is a city alert of one member. Alerts of one district are never linked directly: the district twin has
  already decided to keep them apart (they are joined only through an alert of another district that links both).
- **Content.** The union of the member areas, the highest member level, the hazard texts and instruction of the
  highest member (the earliest on a tie), a headline naming the members' places (parsed from their headlines by
  the hazard's template, `models.hazards`; else the district's name), and in ``references`` the current message
  of every member (and, on an Update or Cancel, the city alert's previous message).
- **Identifiers.** A city alert's identifier is derived from its *anchor*, the earliest-raised member it started
  from (raise time from the member identifier ``citytwin.{district}.{hazard}.{YYYYMMDDTHHMMSSZ}.{nnnnn}``, then the
  identifier): ``citytwin.city.{district}.{hazard}.{time}.{nnnnn}`` (``.r2``, ``.r3`` ... if that identifier was
  already used). Later messages are ``{id}.update{n}`` and ``{id}.cancel{n}`` as in the district profile. When
  groups join, the city alert with the earliest anchor goes on (an Update) and the others are cancelled
  (``merged into {id}``); a new member raised earlier than every anchor of its group counts as the anchor of a
  new city alert, exactly as if it had arrived first. So without cancellations the identifiers do not depend on
  the order the district alerts arrived in (the tests check it). When a group splits, the city alert stays with
  the part holding its earliest member and the other parts become new city alerts.
- **Updates and cancels.** A city alert gets an Update whenever its members or their messages change, and a Cancel
  when its last member is cancelled (``all district alerts cleared``) or it is merged into another.

Restarts: a merger may start in *hold* mode, take in the retained district alerts and its own retained city alerts
of the previous run (`adopt`) and only then publish (`release`): city alerts that are still backed go on with
their identifiers and message counts, those whose members are gone are cancelled.

Bad input is never dropped silently: `AlertMerger.rejected` counts every refused message by reason.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import shapely

from models.hazards import REGISTRY
from twin.alerting import cap
from twin.city.boundaries import lonlat, projected
from twin.district.grid import DEFAULT_CRS

DEFAULT_TOLERANCE_M = 10.0
"""Two areas closer than this are linked: one grid cell. [m]"""
CITY_PREFIX = "citytwin.city."
"""Start of every city alert identifier."""
DEFAULT_SENDER = "twin.city@citytwin"
MAX_PLACES = 3
"""Places named in a headline; more are counted (``and 2 more``)."""
MAX_GEOCODES = 32
"""The member geocodes are listed when there are at most this many (the district profile's bound)."""
SIMPLIFY_M = 0.5
"""Tolerance of the union outline's simplification, below the 1 m of a 5-decimal CAP point. [m]"""
MAX_USED_IDS = 100_000
"""City identifiers remembered so that none is issued twice (oldest forgotten first)."""
MAX_ACTIVE = 100_000
"""Active district alerts held at most; a new one beyond is refused (``too_many``)."""
REASONS = ("not_json", "not_cap", "no_district", "no_hazard", "bad_area", "too_many")
"""Why a district message was refused (`AlertMerger.rejected`)."""
_SUFFIX = re.compile(r"\.(update|cancel|ack)\d+$")
_RERUN = re.compile(r"\.r\d+$")
_RAISED = "%Y%m%dT%H%M%SZ"
_ID_OK = re.compile(r"^[^\s,<&]{1,512}$")
_COLOUR_LEVEL = {colour: level for level, colour in cap.LEVEL_COLOUR.items()}
_SEVERITY_LEVEL = {severity: level for level, severity in cap.LEVEL_SEVERITY.items()}
_CLEARED = {"zh-CN": "解除：", "en-US": "Cleared: "}
_ALL_CLEARED = {"zh-CN": "各区预警均已解除", "en-US": "all district alerts cleared"}


class RejectedError(ValueError):
    """A district message the merger cannot use; ``reason`` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------- reading district alerts
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


def _parameter(info: dict, name: str) -> str | None:
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


def _level(info: dict) -> int:
    colour = _parameter(info, "warningLevel")
    return _COLOUR_LEVEL.get(colour or "", _SEVERITY_LEVEL.get(str(info.get("severity")), 0))


def _polygon(text: str) -> shapely.Geometry:
    pairs = [tuple(float(v) for v in p.split(",")) for p in str(text).split()]
    if len(pairs) < 4 or any(len(p) != 2 for p in pairs):
        raise ValueError("a polygon needs at least 4 lat,lon pairs")
    lonlat_xy = [(lon, lat) for lat, lon in pairs]
    if not all(math.isfinite(v) for xy in lonlat_xy for v in xy) or not all(
            -180 <= x <= 180 and -90 <= y <= 90 for x, y in lonlat_xy):
        raise ValueError("a point is not a WGS84 lat,lon pair")
    return shapely.make_valid(shapely.Polygon(lonlat_xy))


def _circle(text: str, crs: str) -> shapely.Geometry:
    centre, radius = str(text).split()
    lat, lon = (float(v) for v in centre.split(","))
    radius_m = float(radius) * 1000.0  # CAP circle radius [km]
    if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 <= radius_m < 1e6):
        raise ValueError("not a WGS84 lat,lon centre and a radius in km")
    return projected(shapely.Point(lon, lat), crs).buffer(max(radius_m, 0.5))


def cap_area(info: dict, crs: str = DEFAULT_CRS) -> shapely.Geometry:
    """The union of an info block's CAP polygons and circles, in ``crs`` [m]; ValueError for a bad one."""
    parts = []
    for area in info.get("area") or []:
        if not isinstance(area, dict):
            raise ValueError("an area is not an object")
        lonlat_parts = [_polygon(p) for p in area.get("polygon") or []]
        if lonlat_parts:
            parts.append(projected(shapely.union_all(lonlat_parts), crs))
        parts += [_circle(c, crs) for c in area.get("circle") or []]
    if not parts:
        return shapely.Polygon()
    return shapely.make_valid(shapely.union_all(parts))


def district_alert(message: dict, crs: str = DEFAULT_CRS) -> DistrictAlert:
    """The merger's view of a checked CAP message (`load_message`); `RejectedError` when it cannot be used."""
    key = alert_key(message["identifier"])
    district = _district_of(key, message["sender"])
    info = cap.info_block(message, "en-US")
    parts = key.split(".")
    hazard = _parameter(info, "hazard") or (parts[2] if len(parts) >= 5 and parts[0] == "citytwin" else "")
    if not hazard:
        raise RejectedError("no_hazard", f"{key}: no hazard parameter and none in the identifier")
    try:
        area = cap_area(info, crs)
    except (ValueError, TypeError) as exc:
        raise RejectedError("bad_area", f"{key}: {exc}") from None
    raised = next((t for t in (raised_time(key), cap_seconds(info.get("onset")), cap_seconds(message["sent"]))
                   if t is not None), math.inf)
    return DistrictAlert(key, district, hazard, _level(info), raised, area, message)


# ---------------------------------------------------------------- grouping (pure)
def group_alerts(alerts: Iterable[DistrictAlert],
                 tolerance_m: float = DEFAULT_TOLERANCE_M) -> list[list[DistrictAlert]]:
    """The city groups of a set of district alerts: connected components of the links (same hazard, different
    districts, areas within ``tolerance_m`` [m]). Each group is sorted by `DistrictAlert.order`, the groups by
    their first member."""
    alerts = sorted(alerts, key=lambda a: a.order)
    parent = list(range(len(alerts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_hazard: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(alerts):
        if not a.area.is_empty:
            by_hazard[a.hazard].append(i)
    for idx in by_hazard.values():
        geoms = np.array([alerts[i].area for i in idx], dtype=object)
        tree = shapely.STRtree(geoms)
        left, right = tree.query(geoms, predicate="dwithin", distance=tolerance_m)
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            i, j = idx[a], idx[b]
            if i < j and alerts[i].district != alerts[j].district:
                parent[root(j)] = root(i)
    groups: dict[int, list[DistrictAlert]] = defaultdict(list)
    for i, a in enumerate(alerts):
        groups[root(i)].append(a)
    return sorted(groups.values(), key=lambda g: g[0].order)


# ---------------------------------------------------------------- city alerts
@dataclass(frozen=True)
class CityContext:
    """Who sends the city alerts and how districts are named.

    ``district_names`` maps a partition key to its (English, Chinese) names (the manifest's ``name_en`` and
    ``name``); an unknown district is named by its key.
    """

    sender: str = DEFAULT_SENDER
    sender_name: str = "上海市城市运行数字孪生·全市 / citytwin Shanghai city tier"
    district_names: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def names(self, district: str) -> tuple[str, str]:
        """(English, Chinese) name of a district."""
        return self.district_names.get(district, (district, district))


@dataclass
class CityAlert:
    """One city alert as the merger holds it."""

    identifier: str
    anchor: tuple[float, str]
    """`DistrictAlert.order` of the member its identifier derives from."""
    refs: dict[str, str] = field(default_factory=dict)
    """Member key -> reference of the member message the last city message covered."""
    messages: int = 0
    """City messages published so far."""
    last: dict | None = None
    hazard: str = ""
    level: int = 0
    area: shapely.Geometry = field(default_factory=shapely.Polygon)
    """Union of the member areas [m, projected]."""
    by_district: dict[str, shapely.Geometry] = field(default_factory=dict)
    """Member areas by district [m, projected] (the unit router's "own district" test)."""

    @property
    def districts(self) -> list[str]:
        return sorted(self.by_district)


@dataclass(frozen=True)
class CityUpdate:
    """One city message to publish, with what the unit router needs."""

    identifier: str
    """The city alert's first identifier (its topic id)."""
    message: dict
    cancelled: bool
    area: shapely.Geometry
    by_district: Mapping[str, shapely.Geometry]


class AlertMerger:
    """Keeps the active district alerts and turns each change into city CAP messages (module docstring).

    Parameters
    ----------
    context : CityContext
        Sender and district names.
    tolerance_m : float
        Areas closer than this are linked. [m]
    crs : str
        Projected CRS the areas are compared in.
    hold : bool
        Start in hold mode: take messages in, publish nothing until `release`.
    """

    def __init__(self, context: CityContext | None = None, tolerance_m: float = DEFAULT_TOLERANCE_M,
                 crs: str = DEFAULT_CRS, hold: bool = False) -> None:
        if not (tolerance_m >= 0 and math.isfinite(tolerance_m)):
            raise ValueError(f"tolerance_m must be a finite number >= 0, got {tolerance_m!r}")
        self.context = context or CityContext()
        self.tolerance_m, self.crs, self.holding = tolerance_m, crs, hold
        self.active: dict[str, DistrictAlert] = {}
        self.cities: dict[str, CityAlert] = {}
        self.rejected: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        """``accepted``, ``cancelled``, ``cancel_unknown``, ``removed``, ``adopted``, ``city_messages``."""
        self._used: OrderedDict[str, None] = OrderedDict()

    # ------------------------------------------------------------ input
    def accept(self, payload: bytes | str | dict, now: float) -> list[CityUpdate]:
        """Take one district message (``now`` [unix s] dates the city messages); the city messages it causes.
        A message that cannot be used raises `RejectedError` (counted in `rejected`)."""
        try:
            message = load_message(payload)
            if message["msgType"] == "Cancel":
                return self._cancel_member(alert_key(message["identifier"]), message, now)
            alert = district_alert(message, self.crs)
            if alert.key not in self.active and len(self.active) >= MAX_ACTIVE:
                raise RejectedError("too_many", f"{MAX_ACTIVE} district alerts are active already")
        except RejectedError as exc:
            self.rejected[exc.reason] += 1
            raise
        self.counts["accepted"] += 1
        self.active[alert.key] = alert
        return self._changed(now, {})

    def remove(self, key: str, now: float) -> list[CityUpdate]:
        """An alert whose retained message was removed without a Cancel seen (its topic emptied)."""
        alert = self.active.pop(key, None)
        if alert is None:
            return []
        self.counts["removed"] += 1
        return self._changed(now, {})

    def _cancel_member(self, key: str, message: dict, now: float) -> list[CityUpdate]:
        if self.active.pop(key, None) is None:
            self.counts["cancel_unknown"] += 1
            return []
        self.counts["cancelled"] += 1
        return self._changed(now, {key: cap.reference(message)})

    def adopt(self, payload: bytes | str | dict, now: float) -> list[CityUpdate]:
        """A retained city alert of an earlier run (its identifier, message count, members from its references);
        ignored when known or a Cancel. Outside hold mode, a city alert no longer backed is cancelled at once."""
        try:
            message = load_message(payload)
        except RejectedError:
            self.rejected["not_cap"] += 1
            raise
        cid = alert_key(message["identifier"])
        if message["msgType"] == "Cancel" or cid in self.cities or not cid.startswith(CITY_PREFIX):
            return []
        member = "citytwin." + _RERUN.sub("", cid.removeprefix(CITY_PREFIX))
        refs = {}
        for ref in str(message.get("references") or "").split():
            sender, identifier, _ = [*ref.split(","), "", "", ""][:3]
            if sender != self.context.sender and identifier:
                refs[alert_key(identifier)] = ref
        match = re.search(r"\.(update|cancel)(\d+)$", message["identifier"])
        raised = raised_time(member)
        city = CityAlert(cid, (math.inf if raised is None else raised, member), refs,
                         int(match.group(2)) + 1 if match else 1, message)
        info = cap.info_block(message, "en-US")
        city.hazard, city.level = _parameter(info, "hazard") or "", _level(info)
        self.cities[cid] = city
        self._use(cid)
        self.counts["adopted"] += 1
        return self._changed(now, {})

    def release(self, now: float) -> list[CityUpdate]:
        """Leave hold mode: the city messages of everything taken in meanwhile."""
        self.holding = False
        return self._changed(now, {})

    # ------------------------------------------------------------ output
    def city_alerts(self) -> list[CityAlert]:
        """The active city alerts, by anchor."""
        return sorted(self.cities.values(), key=lambda c: c.anchor)

    def _changed(self, now: float, gone: dict[str, str]) -> list[CityUpdate]:
        if self.holding:
            return []
        out = self._recompute(now, gone)
        self.counts["city_messages"] += len(out)
        return out

    def _recompute(self, now: float, gone: dict[str, str]) -> list[CityUpdate]:
        groups = group_alerts(self.active.values(), self.tolerance_m)
        where = {a.key: gi for gi, g in enumerate(groups) for a in g}
        homes: dict[int, list[CityAlert]] = defaultdict(list)
        cleared = []
        for city in self.city_alerts():
            alive = [k for k in city.refs if k in where]
            if alive:
                homes[where[min(alive, key=lambda k: self.active[k].order)]].append(city)
            else:
                cleared.append(city)
        out: list[CityUpdate] = []
        for gi, group in enumerate(groups):
            candidates = homes.get(gi, [])
            claimed = {k for c in candidates for k in c.refs}
            loose = [a for a in group if a.key not in claimed]
            if not candidates or (loose and loose[0].order < candidates[0].anchor):
                winner, absorbed = self._new_city(loose[0]), candidates
            else:
                winner, absorbed = candidates[0], candidates[1:]
            out += self._publish(winner, group, absorbed, now, gone)
        for city in cleared:
            out.append(self._cancel(city, now, _ALL_CLEARED, [gone[k] for k in city.refs if k in gone]))
        return out

    def _new_city(self, first: DistrictAlert) -> CityAlert:
        base = CITY_PREFIX + first.key.removeprefix("citytwin.")
        cid, k = base, 1
        while cid in self._used:
            k += 1
            cid = f"{base}.r{k}"
        self._use(cid)
        return CityAlert(cid, first.order)

    def _use(self, cid: str) -> None:
        self._used[cid] = None
        while len(self._used) > MAX_USED_IDS:
            self._used.popitem(last=False)

    def _publish(self, city: CityAlert, group: list[DistrictAlert], absorbed: list[CityAlert], now: float,
                 gone: dict[str, str]) -> list[CityUpdate]:
        refs = {a.key: a.reference for a in group}
        if city.messages and refs == city.refs and not absorbed:
            return []
        left = [gone[k] for k in city.refs if k in gone]
        previous = [cap.reference(city.last)] if city.last else []
        extra = [cap.reference(c.last) for c in absorbed if c.last]
        city.refs = refs
        _fill(city, group)
        message = compose_city(city, group, now, self.context, previous + list(refs.values()) + extra + left)
        self.cities[city.identifier] = city
        out = [CityUpdate(city.identifier, message, False, city.area, dict(city.by_district))]
        note = {"zh-CN": f"已并入预警 {city.identifier}", "en-US": f"merged into {city.identifier}"}
        return out + [self._cancel(c, now, note, []) for c in absorbed]

    def _cancel(self, city: CityAlert, now: float, why: dict[str, str], left: list[str]) -> CityUpdate:
        message = cancel_city(city, now, why, left)
        del self.cities[city.identifier]
        return CityUpdate(city.identifier, message, True, city.area, dict(city.by_district))


def _fill(city: CityAlert, group: list[DistrictAlert]) -> None:
    """Hazard, level and areas of a city alert from its members."""
    city.hazard = group[0].hazard
    city.level = max(a.level for a in group)
    parts: dict[str, list[shapely.Geometry]] = defaultdict(list)
    for a in group:
        parts[a.district].append(a.area)
    city.by_district = {d: shapely.union_all(g) for d, g in parts.items()}
    city.area = shapely.union_all(list(city.by_district.values()))


# ---------------------------------------------------------------- composing city messages (pure)
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


def _polygons(geometry: shapely.Geometry) -> list[shapely.Polygon]:
    """The polygons of a (multi)polygon or collection, nested parts included."""
    if geometry.geom_type == "Polygon":
        return [] if geometry.is_empty else [geometry]
    if geometry.geom_type in ("MultiPolygon", "GeometryCollection"):
        return [p for part in shapely.get_parts(geometry) for p in _polygons(part)]
    return []


def _outline(area: shapely.Geometry, crs: str) -> list[str]:
    """CAP polygons (one per part, holes left out, as the district profile does) of a projected area."""
    out = []
    for polygon in _polygons(shapely.simplify(area, SIMPLIFY_M, preserve_topology=True)):
        text = cap.polygon_text(list(lonlat(polygon.exterior, crs).coords))
        if len(text.split()) >= 4:
            out.append(text)
    return out


def _area_block(city: CityAlert, group: list[DistrictAlert], context: CityContext, crs: str) -> dict:
    names = ", ".join(context.names(d)[0] for d in city.districts)
    names_zh = "、".join(context.names(d)[1] for d in city.districts)
    descs = [str(((cap.info_block(a.message, "en-US").get("area") or [{}])[0] or {}).get("areaDesc", ""))
             for a in group]
    area: dict = {"areaDesc": f"{names} ({names_zh}): " + " | ".join(d for d in descs if d)}
    polygons = _outline(city.area, crs) if not city.area.is_empty else []
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


def members_of(message: dict, city_sender: str = DEFAULT_SENDER) -> list[str]:
    """The district alert keys a city message references (its own previous messages left out)."""
    out = []
    for ref in str(message.get("references") or "").split():
        parts = ref.split(",")
        if len(parts) == 3 and parts[0] != city_sender:
            out.append(alert_key(parts[1]))
    return list(dict.fromkeys(out))
