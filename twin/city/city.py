"""A city: its manifest (`twin.city.manifest`), its district twins (`twin.city.districts`), their device
registries and the district raster that routes records by position (`twin.city.locate`).

::

    city = load_city("data/city/bund4.yaml")          # cache: var/city/bund4 (or cache=...)
    report = city.build()                              # every district's sources, grid, road network; registries
    ds, buildings = city.district("310101").twin()
    registry = city.district("310109").registry()
    raster = city.raster()                             # ingest.districts.DistrictRaster

The cache is a folder of district folders (`twin.city.districts`) plus the city's own files: ``registry.geojson``
(every device, with its home partition in ``district``, "" for a vehicle), ``registry.json`` (counts, the devices no
twin holds and why) and ``raster-<cell>m.npz``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import geopandas as gpd

from twin.city.devices import Assignment, assign
from twin.city.districts import District, DistrictReport, _digest, _read_json, _write_json
from twin.city.manifest import Manifest, load_manifest
from twin.district.sources import DistrictSources, data_dir, read_district, read_layer

DEFAULT_CACHE = Path("var/city")
"""Where a city is built when no cache is given: ``var/city/<manifest name>`` under the working folder (as
``twin run`` keeps its state in ``var/twin``)."""
DEVICE_COLUMNS = ("crowd", "rain", "water", "level", "pump", "traffic", "unit")


@dataclass
class CityReport:
    """What `City.build` did: one report per district twin, the registries' assignment, the total time [s]."""

    districts: list[DistrictReport]
    assignment: Assignment
    devices: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per partition, devices by kind (sensors held, units homed there)."""
    seconds: float = 0.0


class City:
    """A city's district twins, built and cached under ``cache``."""

    def __init__(self, manifest: Manifest, cache: str | Path | None = None) -> None:
        self.manifest = manifest
        self.cache = Path(cache) if cache is not None else DEFAULT_CACHE / manifest.path.stem
        self.districts = tuple(District(spec, self) for spec in manifest.districts)
        self._osm: dict[str, DistrictSources] = {}

    def __repr__(self) -> str:
        return f"City({self.name_en!r}, {len(self.districts)} districts, cache={str(self.cache)!r})"

    # ------------------------------------------------------------ the manifest's values
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def name_en(self) -> str:
        return self.manifest.name_en

    @property
    def boundaries(self):
        """The district boundaries (`twin.city.boundaries.Boundaries`)."""
        return self.manifest.boundaries

    @property
    def partitions(self) -> tuple[str, ...]:
        """The partition keys, in manifest order."""
        return tuple(d.partition for d in self.districts)

    def district(self, partition: str) -> District:
        """The district twin of a partition key (``310101``, ``310115-t2``); KeyError naming the known ones."""
        for d in self.districts:
            if d.partition == partition:
                return d
        raise KeyError(f"no district {partition!r} in {self.manifest.path.name}; districts: "
                       f"{', '.join(self.partitions)}")

    @cached_property
    def areas(self) -> dict[str, object]:
        """The ground of each district twin (lon/lat), by partition key."""
        return {spec.partition: spec.area(self.boundaries) for spec in self.manifest.districts}

    # ------------------------------------------------------------ shared sources
    def data_folder(self, folder: str) -> Path:
        return data_dir() / folder

    def osm_sources(self, folder: str) -> DistrictSources:
        """A bundled folder's sources, read once for all the districts cut from it."""
        if folder not in self._osm:
            self._osm[folder] = read_district(self.data_folder(folder))
        return self._osm[folder]

    def osm_places(self, folder: str) -> gpd.GeoDataFrame:
        """A bundled folder's named places (empty when it has none)."""
        path = self.data_folder(folder) / "places.geojson"
        return read_layer(path) if path.is_file() else gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")

    # ------------------------------------------------------------ registries
    def registry_features(self) -> list[dict]:
        """Every device of the city: the manifest's registry files, then each synthetic district's own devices.
        `ingest.registry.RegistryError` lists every problem (a bad feature, an id given twice)."""
        from ingest.registry import registry_from_geojson

        features = []
        for path in self.manifest.registries:
            features += json.loads(path.read_text(encoding="utf-8")).get("features", [])
        for district in self.districts:
            features += district.own_devices()
        registry_from_geojson({"type": "FeatureCollection", "features": features})  # checks, lists problems
        return features

    def write_registries(self) -> Assignment:
        """Write each district's ``registry.geojson`` (its sensors and every mover) and the city's."""
        features = self.registry_features()
        assignment = assign(features, self.areas)
        for district in self.districts:  # a synthetic device near its tile's edge stays in its own tile
            for feat in district.own_devices():
                assignment.home.setdefault(feat["properties"]["id"], district.partition)
                assignment.unplaced.pop(feat["properties"]["id"], None)
        tagged = {f["properties"]["id"]: _tagged(f, assignment.home.get(f["properties"]["id"], "")) for f in features}
        movers = [tagged[d] for d in assignment.movers]
        for district in self.districts:
            _write_collection(district.registry_path, [tagged[d] for d in assignment.sensors_of(district.partition)]
                              + movers)
        _write_collection(self.cache / "registry.geojson", list(tagged.values()))
        _write_json(self.cache / "registry.json", {"digest": self.registry_digest(), "devices": len(features),
                                                   "movers": len(assignment.movers),
                                                   "unplaced": assignment.unplaced})
        return assignment

    def registry_digest(self) -> str:
        """What the registries depend on: the registry files, every district's source (its own devices, its
        area), and the boundaries."""
        files = [hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "-" for p in self.manifest.registries]
        return _digest(files, [d.source_digest() for d in self.districts], self.boundaries.digest)

    def registries_current(self) -> bool:
        """The registry files were written from the current inputs."""
        return _read_json(self.cache / "registry.json").get("digest") == self.registry_digest()

    def device_counts(self, assignment: Assignment) -> dict[str, dict[str, int]]:
        """Per partition, sensors by kind and the units homed there."""
        out = {p: dict.fromkeys(DEVICE_COLUMNS, 0) for p in self.partitions}
        for dev, part in assignment.home.items():
            kind = assignment.kinds.get(dev)
            if kind in DEVICE_COLUMNS:
                out[part][kind] += 1
        return out

    # ------------------------------------------------------------ building
    def build(self, force: bool = False, network: bool = True, progress: Callable[[str, str], None] | None = None,
              only: set[str] | None = None) -> CityReport:
        """Build (or find cached) every district twin (those of ``only``, partition keys, when given), then the
        registries of all. ``progress(partition, step)`` is called at each step."""
        t0 = time.perf_counter()
        reports = []
        for district in self.districts:
            if only is not None and district.partition not in only:
                continue
            reports.append(district.build(force, network, (lambda s, p=district.partition: progress(p, s))
                                          if progress else None))
        assignment = self.write_registries()
        return CityReport(reports, assignment, self.device_counts(assignment), time.perf_counter() - t0)

    def raster(self, cell_m: float = 100.0):
        """The city's district raster (`ingest.districts.DistrictRaster`, partition keys), cached in the cache."""
        from ingest.districts import DistrictRaster
        from twin.city.locate import district_raster

        path = self.cache / f"raster-{cell_m:g}m.npz"
        digest = _digest(self.boundaries.digest, [(s.partition, s.code, s.source.describe(), s.source.bbox,
                                                   s.source.centre, s.source.size_m) for s in self.manifest.districts],
                         cell_m)
        if _read_json(path.with_suffix(".json")).get("digest") == digest and path.is_file():
            return DistrictRaster.load(path)
        raster = district_raster(self, cell_m)
        path.parent.mkdir(parents=True, exist_ok=True)
        raster.save(path)
        _write_json(path.with_suffix(".json"), {"digest": digest, "shape": list(raster.shape)})
        return raster


def _tagged(feature: dict, partition: str) -> dict:
    """The feature with its home partition in ``district``."""
    return {**feature, "properties": {**feature["properties"], "district": partition}}


def _write_collection(path: Path, features: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"type": "FeatureCollection", "name": "registry", "features": features}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def load_city(path: str | Path, cache: str | Path | None = None) -> City:
    """The city of a manifest file (`twin.city.manifest.ManifestError` lists every problem)."""
    return City(load_manifest(path), cache)


def summary_table(report: CityReport) -> str:
    """The build as a text table: district, cells, buildings, roads km, devices by kind, time."""
    head = (f"{'district':<16} {'name':<22} {'source':<26} {'cell':>5} {'cells':>9} {'km2':>6} {'bldgs':>6} "
            f"{'roads km':>8} " + " ".join(f"{k:>7}" for k in DEVICE_COLUMNS) + f" {'time s':>7}")
    lines = [head, "-" * len(head)]
    totals: Counter = Counter()
    for r in report.districts:
        dev = report.devices.get(r.partition, {})
        lines.append(f"{r.partition:<16} {r.name_en[:22]:<22} {r.source[:26]:<26} {r.cell_m:>5g} {r.cells:>9,} "
                     f"{r.area_km2:>6.2f} {r.buildings:>6,} {r.roads_km:>8.1f} "
                     + " ".join(f"{dev.get(k, 0):>7}" for k in DEVICE_COLUMNS)
                     + f" {('cached' if r.cached else f'{r.seconds:.1f}'):>7}")
        totals.update({"cells": r.cells, "area": r.area_km2, "buildings": r.buildings, "roads": r.roads_km,
                       **{k: dev.get(k, 0) for k in DEVICE_COLUMNS}})
    lines.append("-" * len(head))
    lines.append(f"{'city':<16} {'':<22} {'':<26} {'':>5} {totals['cells']:>9,} {totals['area']:>6.2f} "
                 f"{totals['buildings']:>6,} {totals['roads']:>8.1f} "
                 + " ".join(f"{totals[k]:>7}" for k in DEVICE_COLUMNS) + f" {report.seconds:>7.1f}")
    movers = len(report.assignment.movers)
    lines.append(f"movers (vehicles and units, held by every district twin): {movers}; "
                 f"devices no twin holds: {len(report.assignment.unplaced)}")
    lines += [f"  {dev}: {why}" for dev, why in sorted(report.assignment.unplaced.items())]
    return "\n".join(lines)
