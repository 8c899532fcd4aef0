"""Which district twin each registered device belongs to.

- A **sensor** (crowd, rain, water, traffic) belongs to exactly one twin: the one whose area (its district cut to
  its source's extent, `twin.city.manifest.DistrictSpec.area`) holds its Point, or the largest share of its coverage
  Polygon. A sensor within `NEAR_M` of an area but in none (a gauge on a river bank the boundary leaves out, a
  boundary sliver) goes to the nearest area; one farther away belongs to no twin and is listed with the reason.
- A **mover** (vehicle, unit) can be anywhere: every district twin holds every mover (docs/city-deployment.md
  section 5, handover). A unit's *home* is the twin whose area holds its home position (its registry Point),
  recorded in its ``district`` property; a vehicle has none.

The home is written into every device of the city's ``registry.geojson`` as its ``district`` property
(`twin.city.city.City.write_registries`). A district twin keeps the sensors whose ``district`` is its partition and
every mover (`twin.live.district_registry.district_devices`), whether it reads a registry file or the registry
database; the ingest workers route a sensor's records by the same property (`ingest.worker.static_districts`), so a
sensor's records and its registry entry reach the same twin, and so do its registry changes
(`ingest.registry_follow`).

Pure: GeoJSON features and lon/lat polygons in, dictionaries out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import shape

from twin.city.boundaries import projected

NEAR_M = 50.0
"""A sensor this close to a twin's area (and in none) belongs to the nearest one [design: a few grid cells; the
district boundaries are accurate to tens of metres (data/city/PROVENANCE.md)]. [m]"""
MOVER_KINDS = ("vehicle", "unit")


@dataclass
class Assignment:
    """The home twin (partition key) of every device, and what found none."""

    home: dict[str, str] = field(default_factory=dict)
    """Device id -> partition key, for every sensor placed and every unit with a home inside an area."""
    movers: list[str] = field(default_factory=list)
    """Ids of the vehicles and units (held by every district twin)."""
    unplaced: dict[str, str] = field(default_factory=dict)
    """Sensor id -> why no twin holds it."""
    kinds: dict[str, str] = field(default_factory=dict)
    """Device id -> kind, for every device."""

    def sensors_of(self, partition: str) -> list[str]:
        """Ids of the sensors (not movers) whose home is ``partition``."""
        return [d for d, p in self.home.items() if p == partition and self.kinds[d] not in MOVER_KINDS]


def assign(features: list[dict], areas: dict[str, shapely.Geometry]) -> Assignment:
    """The home twin of every feature of a registry (`ingest.registry` format, lon/lat), from the twins' areas."""
    keys = list(areas)
    metric = [projected(areas[k]) for k in keys]
    for g in metric:
        shapely.prepare(g)
    out = Assignment()
    for feat in features:
        props = feat.get("properties") or {}
        dev, kind, geometry = str(props.get("id")), props.get("kind"), feat.get("geometry")
        out.kinds[dev] = str(kind)
        if kind in MOVER_KINDS:
            out.movers.append(dev)
        if geometry is None:
            if kind not in MOVER_KINDS:
                out.unplaced[dev] = "no geometry"
            continue
        where = _home(projected(shape(geometry)), metric)
        if where is not None:
            out.home[dev] = keys[where]
        elif kind not in MOVER_KINDS:
            out.unplaced[dev] = f"more than {NEAR_M:g} m from every district twin of the city"
    return out


def _home(geometry: shapely.Geometry, areas: list[shapely.Geometry]) -> int | None:
    """Index of the area holding the point (or the largest share of the polygon); the nearest within NEAR_M."""
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        shares = np.array([shapely.intersection(geometry, a).area for a in areas])
        if shares.size and shares.max() > 0:
            return int(np.argmax(shares))
        geometry = geometry.representative_point()
    inside = [k for k, a in enumerate(areas) if shapely.covers(a, geometry)]
    if inside:
        return inside[0]
    dist = np.array([shapely.distance(geometry, a) for a in areas])
    return int(np.argmin(dist)) if dist.size and dist.min() <= NEAR_M else None
