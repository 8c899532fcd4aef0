"""The city alert as the merger holds it, who sends it, and what the tier publishes (docs/guides/city-tier.md).

- `CityContext`: the sender of the city alerts and the districts' names (English, Chinese).
- `CityAlert`: one city alert: identifier, anchor, members' references, messages so far, and hazard, level and
  area taken from its members (`fill_from_members`; areas in metres, projected, EPSG:4549 by default).
- `CityUpdate`: one city message to publish, with the areas the unit router needs (`twin.city.units`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import shapely

from twin.city.districtalert import DistrictAlert

DEFAULT_SENDER = "twin.city@citytwin"
"""CAP ``sender`` of the city alerts."""


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


def fill_from_members(city: CityAlert, group: list[DistrictAlert]) -> None:
    """Hazard, level and areas of a city alert from its members (``group``, sorted by `DistrictAlert.order`)."""
    city.hazard = group[0].hazard
    city.level = max(a.level for a in group)
    parts: dict[str, list[shapely.Geometry]] = defaultdict(list)
    for a in group:
        parts[a.district].append(a.area)
    city.by_district = {d: shapely.union_all(g) for d, g in parts.items()}
    city.area = shapely.union_all(list(city.by_district.values()))
