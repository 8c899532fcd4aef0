"""Field units across districts: the city-wide view of the units' positions and the routing of city alerts to them.

docs/city-deployment.md sections 5 and 6, docs/guides/city-tier.md. A district twin sends its alerts to the units
it holds (docs/contract/mqtt.md, ``city/units/{unit}/alerts``: the units within ``--buffer`` of the alert area,
500 m by default). A unit in the next district, a few metres across the border, is held by the other twin and
would never hear of the alert. The city tier closes that gap:

- it follows every unit of the city's registry (their positions on ``city/beidou/{unit}``, the same messages the
  ingest workers take) and locates each in its district (the city's district raster);
- for each city alert (`twin.city.merge`), `units_to_notify` picks the units within ``buffer_m`` of the alert's
  area **that their own district twin does not already reach**: a unit is left to its district twin when it is
  within ``buffer_m`` of a member alert of its own district. So a Hongkou unit near a Huangpu alert gets the city
  alert, a Hongkou unit near the Hongkou part of the same city alert gets only its district's alert;
- as in the district profile, a unit that has had a message of a city alert gets every later message of it,
  including the Cancel, wherever it goes; a unit that moves into reach gets the alert's current message at once,
  and so a unit that changes district is re-routed by its next position.

The copy sent to a unit is the city message with ``scope`` Restricted (`twin.alerting.compose.restricted`). What
the tier remembers of who had which alert lives in memory: after a restart the units get the current message of
each active city alert again when they are next in reach, and a Cancel goes to those in reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import shapely

from twin.alerting.compose import restricted
from twin.district import geo
from twin.district.grid import DEFAULT_CRS

DEFAULT_BUFFER_M = 500.0
"""Reach of an alert around its area, as ``twin run --buffer``. [m]"""
MAX_UNITS = 100_000
"""Units followed at most; positions of further units are refused (counted)."""


@dataclass(frozen=True)
class UnitFix:
    """A unit's last position: ``x``, ``y`` in the projected CRS [m], its time ``t`` [unix s], the district
    (partition) it lies in ("" outside every district) and ``lon``, ``lat`` as reported [degree, WGS84]."""

    unit: str
    x: float
    y: float
    t: float
    district: str
    lon: float = math.nan
    lat: float = math.nan


@dataclass(frozen=True)
class Delivery:
    """One message for one unit: publish ``message`` on ``city/units/{unit}/alerts``."""

    unit: str
    identifier: str
    """The city alert's first identifier."""
    message: dict


def units_to_notify(fixes: Iterable[UnitFix], area: shapely.Geometry, by_district: Mapping[str, shapely.Geometry],
                    buffer_m: float) -> list[str]:
    """The units a city alert reaches that no district twin reaches (module docstring), sorted.

    Parameters
    ----------
    fixes : iterable of UnitFix
        The units' last positions [m, projected].
    area : shapely geometry
        The city alert's area [m, projected] (the union of its members').
    by_district : mapping of str to shapely geometry
        The member areas by district [m, projected].
    buffer_m : float
        Reach around an area [m].
    """
    fixes = list(fixes)
    if not fixes or area is None or area.is_empty:
        return []
    points = shapely.points(np.array([(f.x, f.y) for f in fixes], dtype=float))
    near = shapely.dwithin(area, points, buffer_m)
    out = []
    for fix, reached in zip(fixes, near.tolist(), strict=True):
        own = by_district.get(fix.district)
        if reached and (own is None or own.is_empty or not shapely.dwithin(own, shapely.Point(fix.x, fix.y),
                                                                               buffer_m)):
            out.append(fix.unit)
    return sorted(out)


class UnitRouter:
    """Keeps the units' last positions and the active city alerts; decides who gets which city message.

    Parameters
    ----------
    locate : callable
        (lon, lat) [degree, WGS84] -> the district (partition) holding that point, "" outside every district.
    units : iterable of str or None
        The units to follow (the city registry's units); None follows any unit that reports.
    buffer_m : float
        Reach around an alert's area [m].
    crs : str
        Projected CRS of the areas.
    """

    def __init__(self, locate: Callable[[float, float], str], units: Iterable[str] | None = None,
                 buffer_m: float = DEFAULT_BUFFER_M, crs: str = DEFAULT_CRS) -> None:
        if not (buffer_m >= 0 and math.isfinite(buffer_m)):
            raise ValueError(f"buffer_m must be a finite number >= 0, got {buffer_m!r}")
        self.locate, self.buffer_m, self.crs = locate, buffer_m, crs
        self.units = None if units is None else frozenset(units)
        self.fixes: dict[str, UnitFix] = {}
        self.alerts: dict[str, tuple[dict, shapely.Geometry, dict[str, shapely.Geometry]]] = {}
        self.notified: dict[str, set[str]] = {}
        self.refused: dict[str, int] = {"unknown_unit": 0, "bad_position": 0, "too_many_units": 0, "stale": 0}

    def on_fix(self, unit: str, lon: float, lat: float, t: float) -> list[Delivery]:
        """A unit's position (WGS84 [degree], time [unix s]); the city messages it now gets (alerts it came into
        reach of). Refused positions (unknown unit, bad coordinates, older than the last) are counted."""
        if self.units is not None and unit not in self.units:
            self.refused["unknown_unit"] += 1
            return []
        if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            self.refused["bad_position"] += 1
            return []
        last = self.fixes.get(unit)
        if last is not None and t < last.t:
            self.refused["stale"] += 1
            return []
        if last is None and len(self.fixes) >= MAX_UNITS:
            self.refused["too_many_units"] += 1
            return []
        x, y = geo.to_projected(lon, lat, self.crs)
        fix = UnitFix(unit, float(x), float(y), float(t), self.locate(lon, lat), float(lon), float(lat))
        self.fixes[unit] = fix
        out = []
        for identifier, (message, area, by_district) in self.alerts.items():
            had = self.notified.setdefault(identifier, set())
            if unit not in had and units_to_notify([fix], area, by_district, self.buffer_m):
                had.add(unit)
                out.append(Delivery(unit, identifier, restricted(message)))
        return out

    def on_city(self, identifier: str, message: dict, area: shapely.Geometry,
                by_district: Mapping[str, shapely.Geometry], cancelled: bool) -> list[Delivery]:
        """A city message (`twin.city.cityalert.CityUpdate`'s fields); the deliveries: every unit that had the alert,
        and the units newly in reach (none for a Cancel, which goes to those that had it)."""
        had = self.notified.setdefault(identifier, set())
        if cancelled:
            self.alerts.pop(identifier, None)
            targets = sorted(self.notified.pop(identifier, set()))
        else:
            self.alerts[identifier] = (message, area, dict(by_district))
            had.update(units_to_notify(self.fixes.values(), area, by_district, self.buffer_m))
            targets = sorted(had)
        copy = restricted(message)
        return [Delivery(unit, identifier, copy) for unit in targets]

    def where(self) -> list[dict]:
        """Every followed unit's last position: ``{unit, lon, lat, t, district, alerts}`` (lon, lat [degree], t [unix
        s], the city alerts it has had), by unit."""
        had: dict[str, list[str]] = {}
        for identifier, units in self.notified.items():
            for unit in units:
                had.setdefault(unit, []).append(identifier)
        return [{"unit": u, "lon": f.lon, "lat": f.lat, "t": f.t, "district": f.district,
                 "alerts": sorted(had.get(u, []))} for u, f in sorted(self.fixes.items())]
