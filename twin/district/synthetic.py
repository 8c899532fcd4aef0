"""A synthetic district: seeded buildings, roads, water, land use and sensors where no real data is bundled.

`synthetic_district(area, seed, profile)` fills a lon/lat polygon (a district, or a tile of one) with the layers a
district folder holds (`twin.district.sources`): ``buildings``, ``roads``, ``water``, ``landuse``, ``pois``,
``transit`` (and ``places``), with the properties the real Nextzen/OSM layers carry (``kind``, ``kind_detail``,
``height``, ``floors``, ``name``, ``lanes``, ``oneway``), so `twin.district.build.twin_from_sources` and the road
network builder take them unchanged. It also gives a device registry (`ingest.registry` format) for the tile.
The same seed and area give the same output, byte for byte (`SYNTHETIC_VERSION` names the generator's rules).

How it is laid out
------------------
1. A street lattice, rotated by a random angle (within +/-20 degrees) about the tile's centre. For each road
   class, lines are placed in both directions with stratified random offsets (one uniform position in each of n
   equal strips) so that the expected length per km2 equals the profile's density; a line closer than
   `MIN_ROAD_SPACING_M` to an earlier one is moved to a uniform random position.
   Crossing lines share a vertex, so the road network builder finds the intersections.
2. Creeks: with the profile's probability, one or two gently meandering creeks of 20-40 m width.
3. Blocks: the land between the carriageways (half width + setback) and the creeks. Each block gets a use drawn
   from the profile's shares; a building type fills it on a regular lattice whose pitch gives the type's
   coverage ratio, keeping the footprints wholly inside the block (so a block's realised coverage is at most
   the type's).
4. Metro stations at road crossings, with four entrances; schools, kindergartens, hospitals, police and fire
   stations as POIs; named places (for the vital signs' streets).
5. Sensors and units at the profile's densities (`Profile.devices`), at plausible spots: crowd counters over a
   metro entrance or a park, rain gauges in open ground, water-depth gauges on the carriageway at crossings,
   loop detectors mid-block on arterial and secondary roads, units at home bases in blocks.

Densities and their sources
---------------------------
Road network density [km of centre line per km2 of land], by GB/T 33171 class (`twin.district.layers`):

- GB 50220-95 (城市道路交通规划设计规范) Table 7.1.6, large cities of more than 2 million people: expressway
  0.4-0.5, arterial 0.8-1.2, secondary 1.2-1.4, branch 3-4 km/km2, in total 5.4-7.1 [mem].
- GB/T 51328-2018 (城市综合交通体系规划标准) 12.6: road network density in city centres at least 8 km/km2;
  the national target of 8 km/km2 for built-up areas (2016) [mem]. The national monitoring reports of major
  cities' road network density give Shanghai about 7 km/km2 over its built-up area [mem].
- The bundled Bund (OpenStreetMap, data/bund) has 16.5 km/km2 of motor roads per km2 of land, of which
  expressway 0.14, arterial 3.5, secondary 5.4, branch 7.3 (OSM maps every service lane in the historic core;
  measured with `twin.district.cim.motor_roads` on the Bund twin's extent).

``central`` uses GB 50220's ranges with more branch roads (4.5), 7.45 km/km2 in total, between the monitored
Shanghai figure and GB/T 51328's centre target; ``suburban`` (the new-town centres of the outer districts) uses
the lower end of GB 50220, 5.5 km/km2 [design]. The realised density of a tile varies with its shape and seed; the
tests hold it within `Profile.road_range`.

Building coverage ratio of a block of each type (`BUILDING_TYPES`; footprint area over block area):

- residential, GB 50180-2018 (城市居住区规划设计标准) Table 4.0.2, climate zone III (Shanghai): maximum building
  density 30 % for 4-6 storeys, 28 % for 7-9, 22 % for 10-26 storeys; green space ratio at least 30-35 % [mem];
- old lane housing (石库门里弄): 50-70 % coverage, 2-3 storeys [mem];
- industrial: at least 30 % (国土资源部 工业项目建设用地控制指标, 2008) [mem]; offices, shops, schools and
  hospitals: 25-45 % [assumption].

Open water: Shanghai's water surface ratio (河湖水面率) is about 10 % (Shanghai river and lake report 2020)
[mem], most of it the Huangpu, Dianshan Lake and the estuary; a tile draws only creeks of 20-40 m, with probability
0.4 (central) or 0.9 (suburban) [design].

Metro stations: about 1 per km2 inside the Inner Ring [mem: about 100 stations in about 114 km2], 0.3 per km2 in
new-town centres [assumption].

Sensors and units [per km2 of land] are anchored on the bundled Bund registry (data/bund/REGISTRY.md, itself
illustrative), 8.54 km2 of land: 12 crowd counters (1.4), 6 rain gauges (0.70), 6 water-depth gauges (0.70),
8 loop detectors (0.94), 4 police, 3 fire and 3 medical units (0.47, 0.35, 0.35) [design]. ``suburban`` halves
the sensor densities [assumption] and uses at least one fire station per 7 km2 (GB 51054-2014, 城市消防站设计
规范: a station's district at most 7 km2 [mem]). Every tile gets at least one device of every kind.

Everything marked [mem] is quoted from memory, not checked against the document; [design] and [assumption] are
choices of this generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import mapping

from ingest.decoders.units import SENSOR_KINDS
from twin.district import geo
from twin.district.bim import height_from_storeys
from twin.district.grid import DEFAULT_CRS
from twin.district.sources import DistrictSources

SYNTHETIC_VERSION = 1
"""Version of the generator's rules: output for a given seed changes only with it (caches depend on it)."""
SOURCE_TAG = "citytwin synthetic"
"""The ``source`` property of every synthetic feature."""
MIN_ROAD_SPACING_M = 60.0
"""Parallel roads closer than this are moved apart [design: about the narrowest Shanghai block]. [m]"""
MIN_BLOCK_M2 = 2000.0
"""Blocks smaller than this stay open ground. [m2]"""
ROAD_WIDTH_M = MappingProxyType({"expressway": 30.0, "arterial": 24.0, "secondary": 16.0, "branch": 9.0})
"""Carriageway width by class [m] [mem: CJJ 37-2012 red-line widths are wider: arterial 40-55 m, secondary 24-40 m,
branch 14-20 m; the carriageway is about half]."""
SETBACK_M = MappingProxyType({"expressway": 15.0, "arterial": 10.0, "secondary": 8.0, "branch": 5.0})
"""Building setback from the carriageway edge, pavement and green strip included [assumption]. [m]"""
HIGHWAY = MappingProxyType({"expressway": "trunk", "arterial": "primary", "secondary": "secondary",
                            "branch": "tertiary"})
"""The OSM ``highway`` (Nextzen ``kind_detail``) written for each class (`twin.district.cim.ROAD_CLASS_OF`)."""
LANES = MappingProxyType({"expressway": 6, "arterial": 6, "secondary": 4, "branch": 2})
"""Lanes, both directions [assumption]."""
DEVICE_KINDS = ("crowd", "rain", "water", "traffic", "police", "fire", "medical")


@dataclass(frozen=True)
class BuildingType:
    """Footprint [m], storeys (inclusive range) and the coverage ratio a block of this type is filled to."""

    use: str
    length_m: float
    width_m: float
    storeys: tuple[int, int]
    coverage: float


BUILDING_TYPES = MappingProxyType({
    "highrise": BuildingType("residential", 40.0, 16.0, (11, 33), 0.22),
    "walkup": BuildingType("residential", 50.0, 12.0, (5, 7), 0.28),
    "lilong": BuildingType("residential", 36.0, 10.0, (2, 3), 0.55),
    "office": BuildingType("office", 40.0, 30.0, (8, 40), 0.40),
    "retail": BuildingType("retail", 60.0, 40.0, (3, 6), 0.45),
    "school": BuildingType("school", 60.0, 16.0, (3, 5), 0.25),
    "hospital": BuildingType("hospital", 60.0, 25.0, (5, 15), 0.30),
    "industrial": BuildingType("industrial", 80.0, 40.0, (1, 3), 0.45),
})
"""Building types (sources in the module docstring)."""
LANDUSE_KIND = MappingProxyType({"highrise": "residential", "walkup": "residential", "lilong": "residential",
                                 "office": "commercial", "retail": "retail", "school": "school",
                                 "hospital": "hospital", "industrial": "industrial", "park": "park"})
GARDEN_INSET_M = 8.0
"""Residential, school and hospital blocks get a garden polygon inset this far from the block edge; what the
buildings leave of it is green (GB 50180's green space ratio) [design]. [m]"""


@dataclass(frozen=True)
class Profile:
    """Densities of one kind of place (module docstring for the sources)."""

    roads: MappingProxyType
    """Road centre line per class. [km km-2 of land]"""
    road_range: tuple[float, float]
    """Range the realised total road density of a tile of 2 km x 2 km or more is held to (tests): the mean is the
    target, the spread comes from the few lines a tile holds. [km km-2]"""
    uses: MappingProxyType
    """Share of blocks of each use (`BUILDING_TYPES` keys and ``park``); sums to 1."""
    coverage_range: tuple[float, float]
    """Range of the realised building coverage of a tile's land (tests). [1]"""
    creek_probability: float
    stations_per_km2: float
    devices: MappingProxyType
    """Devices per kind (`DEVICE_KINDS`). [km-2 of land]"""


PROFILES = MappingProxyType({
    "central": Profile(
        MappingProxyType({"expressway": 0.45, "arterial": 1.1, "secondary": 1.4, "branch": 4.5}), (5.5, 10.0),
        MappingProxyType({"highrise": 0.30, "walkup": 0.15, "lilong": 0.10, "office": 0.15, "retail": 0.08,
                          "school": 0.07, "hospital": 0.03, "park": 0.12}), (0.12, 0.40),
        0.4, 1.0,
        MappingProxyType({"crowd": 1.4, "rain": 0.70, "water": 0.70, "traffic": 0.94, "police": 0.47,
                          "fire": 0.35, "medical": 0.35})),
    "suburban": Profile(
        MappingProxyType({"expressway": 0.4, "arterial": 0.9, "secondary": 1.2, "branch": 3.0}), (3.5, 8.0),
        MappingProxyType({"highrise": 0.30, "walkup": 0.10, "office": 0.06, "retail": 0.08, "school": 0.08,
                          "hospital": 0.03, "industrial": 0.20, "park": 0.15}), (0.10, 0.35),
        0.9, 0.3,
        MappingProxyType({"crowd": 0.7, "rain": 0.35, "water": 0.35, "traffic": 0.47, "police": 0.3,
                          "fire": 0.15, "medical": 0.2})),
})
"""The profiles a manifest may name."""


@dataclass
class SyntheticDistrict:
    """What `synthetic_district` makes: layers in lon/lat (EPSG:4326), a registry, and realised figures."""

    layers: dict[str, gpd.GeoDataFrame]
    registry: dict
    stats: dict[str, float] = field(default_factory=dict)
    credit: str = ""

    def sources(self, folder: str | Path) -> DistrictSources:
        """The layers as `DistrictSources` (``folder`` names them; nothing is read from it)."""
        others = {k: v for k, v in self.layers.items() if k not in ("buildings", "places")}
        return DistrictSources(Path(folder), self.layers["buildings"], others)


# ---------------------------------------------------------------- geometry helpers
def _rotation(theta: float, cx: float, cy: float):
    c, s = math.cos(theta), math.sin(theta)

    def rotate(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0] - cx, xy[:, 1] - cy
        return np.column_stack([cx + c * x - s * y, cy + s * x + c * y])

    return rotate


def _frame(geoms, crs: str, rotate, **columns) -> gpd.GeoDataFrame:
    """Geometries of the rotated frame, rotated back and in lon/lat, as a GeoDataFrame with ``columns``."""
    geoms = np.asarray(geoms, dtype=object)
    if geoms.size:
        geoms = shapely.transform(shapely.transform(geoms, rotate), lambda xy: np.column_stack(
            geo.to_lonlat(xy[:, 0], xy[:, 1], crs)))
    return gpd.GeoDataFrame({**columns, "source": [SOURCE_TAG] * len(geoms)}, geometry=list(geoms),
                            crs="EPSG:4326")


def _count(rng: np.random.Generator, expected: float) -> int:
    """Stochastic rounding: floor, plus one with the fractional part's probability."""
    base = math.floor(expected)
    return base + int(rng.random() < expected - base)


# ---------------------------------------------------------------- roads
def _road_lines(rng, bounds, density: MappingProxyType) -> list[tuple[str, str, float]]:
    """(class, axis 'x' or 'y', position) of every road line: lines x = position run south-north."""
    x0, y0, x1, y1 = bounds
    placed: dict[str, list[float]] = {"x": [], "y": []}
    out = []
    for cls in ("expressway", "arterial", "secondary", "branch"):
        for axis, lo, hi in (("x", x0, x1), ("y", y0, y1)):
            n = _count(rng, density[cls] * (hi - lo) / 2000.0)
            for i in range(n):
                pos = lo + (i + rng.random()) * (hi - lo) / n
                for _ in range(8):
                    if all(abs(pos - p) >= MIN_ROAD_SPACING_M for p in placed[axis]):
                        break
                    pos = rng.uniform(lo, hi)
                else:
                    continue
                placed[axis].append(pos)
                out.append((cls, axis, pos))
    return out


def _road_geometries(lines, bounds) -> list[shapely.LineString]:
    """Each road line with a vertex at every crossing (crossing roads share a node)."""
    x0, y0, x1, y1 = bounds
    xs = sorted(p for _, a, p in lines if a == "x")
    ys = sorted(p for _, a, p in lines if a == "y")
    out = []
    for _, axis, pos in lines:
        if axis == "x":
            out.append(shapely.LineString([(pos, y) for y in (y0, *ys, y1)]))
        else:
            out.append(shapely.LineString([(x, pos) for x in (x0, *xs, x1)]))
    return out


def _road_names(lines) -> tuple[list[str], list[str]]:
    """经N路 (south-north) / 纬N路 (west-east), as new towns name their grids; N from west and from south."""
    zh, en = [], []
    rank = {(a, p): k + 1 for a in "xy" for k, p in enumerate(sorted(p for _, b, p in lines if b == a))}
    for cls, axis, pos in lines:
        k = rank[(axis, pos)]
        word, word_en = ("经", "Jing") if axis == "x" else ("纬", "Wei")
        suffix, suffix_en = ("高架路", "Expressway") if cls == "expressway" else ("路", "Road")
        zh.append(f"{word}{k}{suffix}")
        en.append(f"{word_en} {k} {suffix_en}")
    return zh, en


# ---------------------------------------------------------------- creeks
def _creeks(rng, bounds, probability: float) -> list[shapely.Geometry]:
    """Zero to two meandering creek polygons across the frame."""
    x0, y0, x1, y1 = bounds
    out = []
    for _ in range(2):
        if rng.random() >= probability:
            break
        t = np.linspace(0.0, 1.0, 41)
        width = rng.uniform(20.0, 40.0)
        amp, phase, waves = rng.uniform(50.0, 200.0), rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 2.5)
        if rng.random() < 0.5:  # west-east
            base = rng.uniform(y0 + 0.2 * (y1 - y0), y0 + 0.8 * (y1 - y0))
            xy = np.column_stack([x0 + t * (x1 - x0), base + amp * np.sin(2 * np.pi * waves * t + phase)])
        else:
            base = rng.uniform(x0 + 0.2 * (x1 - x0), x0 + 0.8 * (x1 - x0))
            xy = np.column_stack([base + amp * np.sin(2 * np.pi * waves * t + phase), y0 + t * (y1 - y0)])
        out.append(shapely.buffer(shapely.LineString(xy), width / 2.0, cap_style="flat"))
    return out


# ---------------------------------------------------------------- blocks and buildings
def _blocks(area, roads, classes, creeks) -> np.ndarray:
    """The land between carriageways (plus setbacks) and creeks, as polygons."""
    reach = np.array([ROAD_WIDTH_M[c] / 2 + SETBACK_M[c] for c in classes])
    cut = shapely.union_all([*shapely.buffer(np.asarray(roads, dtype=object), reach, cap_style="flat"),
                             *shapely.buffer(np.asarray(creeks, dtype=object), 6.0)])
    parts = shapely.get_parts(shapely.difference(area, cut))
    parts = parts[shapely.get_type_id(parts) == 3]
    return parts[shapely.area(parts) >= MIN_BLOCK_M2]


def _fill_block(rng, block, btype: BuildingType) -> np.ndarray:
    """Footprints of one type on a lattice of the type's coverage, wholly inside the block.

    The lattice pitch is the type's (footprint / coverage), stretched so a whole number of pitches spans the
    block's box; footprints are jittered by up to a quarter of the gap between them."""
    k = 1.0 / math.sqrt(btype.coverage)
    L, W = btype.length_m, btype.width_m
    bx0, by0, bx1, by1 = block.bounds
    nx, ny = round((bx1 - bx0) / (L * k)), round((by1 - by0) / (W * k))
    if nx < 1 or ny < 1:
        return np.zeros(0, dtype=object)
    px, py = (bx1 - bx0) / nx, (by1 - by0) / ny
    if px < L + 4.0 or py < W + 4.0:  # less than 4 m between footprints: one fewer per row or column
        nx, ny = nx - (px < L + 4.0), ny - (py < W + 4.0)
        if nx < 1 or ny < 1:
            return np.zeros(0, dtype=object)
        px, py = (bx1 - bx0) / nx, (by1 - by0) / ny
    xx, yy = np.meshgrid(bx0 + (np.arange(nx) + 0.5) * px, by0 + (np.arange(ny) + 0.5) * py)
    jx, jy = (px - L) / 4, (py - W) / 4
    xx = xx.ravel() + rng.uniform(-jx, jx, xx.size)
    yy = yy.ravel() + rng.uniform(-jy, jy, yy.size)
    boxes = shapely.box(xx - L / 2, yy - W / 2, xx + L / 2, yy + W / 2)
    shapely.prepare(block)
    return boxes[shapely.contains(block, boxes)]


def _buildings(rng, blocks, uses: MappingProxyType):
    """Per block its use; all footprints with use and storeys; the land-use and garden polygons."""
    names = list(uses)
    p = np.array([uses[n] for n in names])
    block_use = [names[i] for i in rng.choice(len(names), size=len(blocks), p=p / p.sum())]
    foot, use, storeys = [], [], []
    for block, kind in zip(blocks, block_use, strict=True):
        if kind == "park":
            continue
        btype = BUILDING_TYPES[kind]
        boxes = _fill_block(rng, block, btype)
        foot.extend(boxes)
        use.extend([btype.use] * len(boxes))
        storeys.extend(rng.integers(btype.storeys[0], btype.storeys[1] + 1, size=len(boxes)).tolist())
    gardens = [shapely.buffer(b, -GARDEN_INSET_M) for b, k in zip(blocks, block_use, strict=True)
               if k in ("highrise", "walkup", "school", "hospital")]
    gardens = [g for g in gardens if not g.is_empty]
    return block_use, np.asarray(foot, dtype=object), use, np.asarray(storeys, dtype=np.int64), gardens


# ---------------------------------------------------------------- points of interest and devices
def _random_points(rng, polygon, n: int, avoid=None) -> list[shapely.Point]:
    """``n`` uniform points inside a polygon (and outside ``avoid``), by rejection; fewer if none fit."""
    if n <= 0 or polygon.is_empty:
        return []
    shapely.prepare(polygon)
    if avoid is not None:
        shapely.prepare(avoid)
    x0, y0, x1, y1 = polygon.bounds
    out: list[shapely.Point] = []
    for _ in range(50):
        x, y = rng.uniform(x0, x1, 8 * n), rng.uniform(y0, y1, 8 * n)
        ok = shapely.contains_xy(polygon, x, y)
        if avoid is not None:
            ok &= ~shapely.contains_xy(avoid, x, y)
        out += [shapely.Point(a, b) for a, b in zip(x[ok], y[ok], strict=True)][: n - len(out)]
        if len(out) >= n:
            break
    return out


def _crossings(lines, area) -> list[tuple[shapely.Point, str, str]]:
    """Road crossings inside the area: (point, class of the higher road, class of the lower)."""
    order = {"expressway": 0, "arterial": 1, "secondary": 2, "branch": 3}
    shapely.prepare(area)
    out = []
    for cx, ax, px in lines:
        if ax != "x":
            continue
        for cy, ay, py in lines:
            if ay == "y" and shapely.contains_xy(area, px, py):
                hi, lo = sorted((cx, cy), key=order.get)
                out.append((shapely.Point(px, py), hi, lo))
    return out


def _pick(rng, items: list, n: int) -> list:
    if n <= 0 or not items:
        return []
    idx = rng.choice(len(items), size=min(n, len(items)), replace=False)
    return [items[i] for i in sorted(idx)]


def _device_counts(rng, profile: Profile, land_km2: float) -> dict[str, int]:
    return {kind: max(1, _count(rng, density * land_km2)) for kind, density in profile.devices.items()}


@dataclass
class _Tile:
    """The pieces of a tile in the rotated frame, shared by the layer and the device builders."""

    area: shapely.Geometry
    lines: list
    roads: list
    blocks: np.ndarray
    block_use: list
    buildings: shapely.Geometry
    stations: list = field(default_factory=list)


# ---------------------------------------------------------------- the generator
def synthetic_district(area: shapely.Geometry, seed: int, profile: str = "central", *, crs: str = DEFAULT_CRS,
                       prefix: str = "syn", name: str = "合成区", name_en: str = "Synthetic") -> SyntheticDistrict:
    """A synthetic district filling ``area`` (a lon/lat polygon) at the densities of ``profile``.

    Parameters
    ----------
    area : shapely Polygon or MultiPolygon
        The ground to fill, lon/lat (WGS84 = CGCS2000). [degree]
    seed : int
        Seed of the random generator: the same seed and area give the same district.
    profile : str
        A key of `PROFILES` (``central``, ``suburban``).
    crs : str
        Projected CRS the layout is made in (metres).
    prefix : str
        Prefix of the device ids (``<prefix>-rain-01``); unique in a city (the partition key).
    name, name_en : str
        The district's names, for places and device names.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    rng = np.random.default_rng(seed)
    area_m = shapely.transform(area, lambda xy: np.column_stack(geo.to_projected(xy[:, 0], xy[:, 1], crs)))
    if area_m.is_empty or area_m.area < 1e4:
        raise ValueError("the area to fill is empty or smaller than 1 ha")
    c = area_m.centroid
    theta = math.radians(rng.uniform(-20.0, 20.0))
    frame = shapely.transform(area_m, _rotation(-theta, c.x, c.y))
    back = _rotation(theta, c.x, c.y)
    bounds = frame.bounds
    creeks = [g for g in shapely.intersection(np.asarray(_creeks(rng, bounds, prof.creek_probability),
                                                         dtype=object), frame) if not g.is_empty]
    water = shapely.union_all(creeks) if creeks else shapely.Polygon()
    land_km2 = (frame.area - water.area) / 1e6
    lines = _road_lines(rng, bounds, prof.roads)
    roads = list(shapely.intersection(np.asarray(_road_geometries(lines, bounds), dtype=object), frame))
    blocks = _blocks(frame, roads, [cls for cls, _, _ in lines], creeks)
    block_use, foot, use, storeys, gardens = _buildings(rng, blocks, prof.uses)
    tile = _Tile(frame, lines, roads, blocks, block_use, shapely.union_all(foot) if len(foot) else shapely.Polygon())
    layers = {
        "roads": _roads_layer(lines, roads, crs, back),
        "buildings": _frame(foot, crs, back, id=np.arange(1, len(foot) + 1), kind=["building"] * len(foot),
                            kind_detail=use, floors=storeys, height=height_from_storeys(storeys)),
        "water": _frame(creeks, crs, back, kind=["river"] * len(creeks), name=[f"{name}河{k + 1}"
                                                                             for k in range(len(creeks))]),
        "landuse": _frame([*blocks, *gardens], crs, back,
                          kind=[LANDUSE_KIND[u] for u in block_use] + ["garden"] * len(gardens)),
    }
    pois, transit, places = _points_of_interest(rng, tile, prof, land_km2, name, name_en)
    layers.update(pois=_frame([p for p, _, _ in pois], crs, back, kind=[k for _, k, _ in pois],
                              name=[n for _, _, n in pois]),
                  transit=_frame([p for p, _, _ in transit], crs, back, kind=[k for _, k, _ in transit],
                                 name=[n for _, _, n in transit]),
                  places=_frame([p for p, _, _ in places], crs, back, kind=["neighbourhood"] * len(places),
                                name=[n for _, n, _ in places], **{"name:zh": [n for _, n, _ in places],
                                                                   "name:en": [n for _, _, n in places]}))
    devices = _devices(rng, tile, prof, land_km2, prefix, name, name_en)
    registry = _registry(devices, crs, back)
    stats = _stats(prof, lines, roads, foot, land_km2, devices, len(tile.stations))
    credit = (f"synthetic data: citytwin twin.district.synthetic v{SYNTHETIC_VERSION}, profile {profile}, "
              f"seed {seed} (not real buildings, roads or devices)")
    return SyntheticDistrict(layers, registry, stats, credit)


def _roads_layer(lines, roads, crs, back) -> gpd.GeoDataFrame:
    keep = [k for k, g in enumerate(roads) if not g.is_empty]
    zh, en = _road_names(lines)
    cls = [lines[k][0] for k in keep]
    return _frame([roads[k] for k in keep], crs, back, id=np.arange(1, len(keep) + 1),
                  kind=["major_road" if c != "branch" else "minor_road" for c in cls],
                  kind_detail=[HIGHWAY[c] for c in cls], name=[zh[k] for k in keep],
                  **{"name:zh": [zh[k] for k in keep], "name:en": [en[k] for k in keep]},
                  lanes=[LANES[c] for c in cls], oneway=["no"] * len(keep))


def _points_of_interest(rng, tile: _Tile, prof: Profile, land_km2: float, name: str, name_en: str):
    """POIs (schools, kindergartens, hospitals, police, fire, metro entrances), metro stations, places."""
    pois, transit = [], []
    crossings = [x for x in _crossings(tile.lines, tile.area) if x[1] != "branch"]
    for k, (point, _, _) in enumerate(_pick(rng, crossings, _count(rng, prof.stations_per_km2 * land_km2))):
        tile.stations.append(point)
        transit.append((point, "station", f"{name}站{k + 1} Station {k + 1}"))
        for dx, dy in ((-25, -25), (25, -25), (-25, 25), (25, 25)):
            pois.append((shapely.Point(point.x + dx, point.y + dy), "subway_entrance", f"{name}站{k + 1}出入口"))
    for block, use in zip(tile.blocks, tile.block_use, strict=True):
        if use in ("school", "hospital"):
            pois.append((block.point_on_surface(), use, f"{name}{'学校' if use == 'school' else '医院'}"))
    residential = [b for b, u in zip(tile.blocks, tile.block_use, strict=True) if u in ("highrise", "walkup")]
    for block in _pick(rng, residential, max(1, _count(rng, 2.0 * land_km2))):
        pois.append((block.point_on_surface(), "kindergarten", f"{name}幼儿园"))
    n_places = max(1, round(land_km2 / 2.0))
    places = [(p, f"{name}片区{k + 1}", f"{name_en} area {k + 1}")
              for k, p in enumerate(_random_points(rng, tile.area, n_places, tile.buildings))]
    return pois, transit, places


def _devices(rng, tile: _Tile, prof: Profile, land_km2: float, prefix: str, name: str, name_en: str) -> list[dict]:
    """Every device: kind, id, name, geometry (rotated frame) and extra properties."""
    counts = _device_counts(rng, prof, land_km2)
    out: list[dict] = []

    def add(kind: str, geom, label: str, **extra) -> None:
        n = sum(1 for d in out if d["_type"] == kind) + 1
        device_kind = kind if kind in ("crowd", "rain", "water", "traffic") else "unit"
        short = {"traffic": "loop", "police": "unit-police", "fire": "unit-fire", "medical": "unit-medical"}
        out.append({"_type": kind, "id": f"{prefix}-{short.get(kind, kind)}-{n:02d}", "kind": device_kind,
                    "name": f"{name} {label} {n}", "geometry": geom, **extra})

    parks = [b for b, u in zip(tile.blocks, tile.block_use, strict=True) if u in ("park", "retail")]
    spots = [shapely.Point(s.x - 25, s.y - 25) for s in tile.stations] + [b.point_on_surface() for b in parks]
    chosen = _pick(rng, spots, counts["crowd"])
    chosen += _random_points(rng, tile.area, counts["crowd"] - len(chosen), tile.buildings)
    for spot in chosen:
        add("crowd", shapely.box(spot.x - 30, spot.y - 15, spot.x + 30, spot.y + 15), "人流计数 crowd counter",
            coverage="polygon", technology="overhead stereo camera counter (synthetic)")
    for p in _random_points(rng, tile.area, counts["rain"], tile.buildings):
        add("rain", p, "雨量计 rain gauge", technology="tipping-bucket gauge 0.2 mm (synthetic)")
    crossings = [x for x, _, _ in _crossings(tile.lines, tile.area)]
    for p in _pick(rng, crossings, counts["water"]):
        add("water", p, "积水监测 water-depth gauge", technology="ultrasonic depth gauge over carriageway (synthetic)")
    _, en = _road_names(tile.lines)
    majors = [(g, en[k]) for k, (g, line) in enumerate(zip(tile.roads, tile.lines, strict=True))
              if line[0] in ("arterial", "secondary") and g.length > 100]
    for g, road in _pick(rng, majors * max(1, counts["traffic"]), counts["traffic"]):
        add("traffic", g.interpolate(rng.uniform(0.2, 0.8), normalized=True), f"线圈 loop on {road}", road=road,
            technology="inductive loop, 1-min aggregates (synthetic)")
    for unit in ("police", "fire", "medical"):
        for p in _random_points(rng, tile.area, counts[unit], tile.buildings):
            add(unit, p, {"police": "派出所 police post", "fire": "消防站 fire station",
                          "medical": "急救站 ambulance station"}[unit], unit_type=unit, home="base position")
    return out


def _registry(devices: list[dict], crs: str, back) -> dict:
    """The devices as a registry GeoJSON FeatureCollection (`ingest.registry`), lon/lat rounded to 1e-6."""
    features = []
    frame = _frame([d["geometry"] for d in devices], crs, back)
    for device, geom in zip(devices, frame.geometry, strict=True):
        props = {k: v for k, v in device.items() if k not in ("_type", "geometry")}
        props["quantities"] = list(SENSOR_KINDS.get(device["kind"], ("position",)))
        props["synthetic"] = True
        geometry = mapping(shapely.set_precision(geom, 1e-6))
        features.append({"type": "Feature", "properties": props, "geometry": _plain(geometry)})
    return {"type": "FeatureCollection", "name": "registry", "features": features}


def _plain(obj):
    """A GeoJSON mapping with lists instead of tuples (what json round trips give)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _stats(prof: Profile, lines, roads, foot, land_km2: float, devices: list[dict], stations: int) -> dict:
    """Realised figures: road km per km2 of land (per class and in total), building coverage of the land [1],
    devices per km2 of land by kind, stations per km2."""
    out: dict[str, float] = {"land_km2": land_km2}
    for cls in prof.roads:
        km = sum(g.length for g, line in zip(roads, lines, strict=True) if line[0] == cls) / 1000.0
        out[f"road_{cls}_km_per_km2"] = km / land_km2
    out["road_km_per_km2"] = sum(out[f"road_{c}_km_per_km2"] for c in prof.roads)
    out["building_coverage"] = float(shapely.area(foot).sum()) / (land_km2 * 1e6) if len(foot) else 0.0
    out["buildings"] = float(len(foot))
    for kind in DEVICE_KINDS:
        out[f"{kind}_per_km2"] = sum(1 for d in devices if d["_type"] == kind) / land_km2
    out["stations_per_km2"] = stations / land_km2
    return out
