"""The city manifest: a YAML file that lists a city's districts, their sources and grids (docs/guides/city.md).

::

    city: {code: "310000", name: 上海市, name_en: Shanghai}
    tick_s: 60                 # the city clock's tick [s]
    cell_m: 10                 # default grid cell of every district [m]
    stream: {url: "nats://127.0.0.1:4222", name: TWIN, subjects: twin.batches., max_age_h: 24}
    mqtt: {broker: "mqtt://127.0.0.1:1883", prefix: city/}
    boundaries: bundled        # data/city/districts.geojson, or a path (relative to this file)
    registry: [bundled:bund]   # device registries: a bundled folder's registry.geojson, or paths
    districts:
      - code: "310101"         # adcode in the boundaries: the partition key
        source: osm:bund       # the bundled folder's OSM data, clipped to the district
      - code: "310104"
        source: synthetic      # twin.district.synthetic, seeded
        seed: 7
        profile: central
        centre: [121.4365, 31.1885]
        size_m: 2000
      - code: "310115"
        tiles:                 # a large district as several twins: partitions 310115-t1, 310115-t2
          - {source: osm:bund}
          - {source: synthetic, seed: 8, centre: [121.59, 31.20], size_m: 2000}

Loaded with ``yaml.safe_load`` rules (no tags, no Python objects). Every problem is listed in one `ManifestError`:
unknown keys, missing or mistyped values, duplicate codes, a district not in the boundaries, a bundled folder that
does not exist, a synthetic tile whose centre lies outside its district, tiles of a district that overlap, ...
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
import yaml

from twin.city.areas import bbox_polygon, cut, folder_extent, square
from twin.city.boundaries import Boundaries, BoundaryError, read_boundaries
from twin.district.sources import data_dir
from twin.district.synthetic import PROFILES

MAX_FILE_BYTES = 1 << 20
"""A manifest is small; a larger file is refused before parsing."""
TOP_KEYS = ("city", "tick_s", "cell_m", "stream", "mqtt", "boundaries", "registry", "districts")
CITY_KEYS = ("code", "name", "name_en")
STREAM_KEYS = ("url", "name", "subjects", "max_age_h")
MQTT_KEYS = ("broker", "prefix")
SOURCE_KEYS = ("source", "seed", "profile", "centre", "size_m", "bbox")
TILE_KEYS = (*SOURCE_KEYS, "cell_m")
DISTRICT_KEYS = ("code", "name", "name_en", "cell_m", "tiles", *SOURCE_KEYS)
DEFAULTS = {"tick_s": 60.0, "cell_m": 10.0, "stream_url": "nats://127.0.0.1:4222", "stream_name": "TWIN",
            "subjects": "twin.batches.", "max_age_h": 24.0, "broker": "mqtt://127.0.0.1:1883", "prefix": "city/",
            "size_m": 2000.0, "profile": "central"}
"""Values of optional keys (the stream keeps 24 h: docs/city-deployment.md section 4)."""
CELL_RANGE_M = (1.0, 500.0)
SIZE_RANGE_M = (100.0, 20000.0)
OVERLAP_M2 = 1.0
"""Two tiles of one district may share edges but not ground: an overlap above this is a problem. [m2]"""
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SUBJECTS = re.compile(r"^([A-Za-z0-9_-]+\.)+$")


class ManifestError(ValueError):
    """A manifest that cannot be used; ``problems`` lists every problem, each naming its key."""

    def __init__(self, problems: list[str], source: str = "manifest") -> None:
        self.problems = list(problems)
        head = f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(head + "".join(f"\n  {p}" for p in problems))


# ---------------------------------------------------------------- the parsed manifest
@dataclass(frozen=True)
class SourceSpec:
    """Where a district's (or tile's) data comes from.

    ``kind`` is ``osm`` (``folder`` a bundled district folder, clipped to the district) or ``synthetic``
    (`twin.district.synthetic` with ``seed`` and ``profile``). The extent is ``bbox`` (west, south, east, north)
    [degree] when given; else the folder's buildings' extent (osm) or a ``size_m`` (width, height) [m] square
    around ``centre`` (lon, lat) [degree] (synthetic).
    """

    kind: str
    folder: str = ""
    seed: int = 0
    profile: str = ""
    centre: tuple[float, float] | None = None
    size_m: tuple[float, float] | None = None
    bbox: tuple[float, float, float, float] | None = None

    def extent(self) -> shapely.Geometry:
        """The source's extent as a lon/lat polygon."""
        if self.bbox is not None:
            return bbox_polygon(self.bbox)
        if self.kind == "osm":
            return bbox_polygon(folder_extent(data_dir() / self.folder))
        assert self.centre is not None and self.size_m is not None
        return square(self.centre, self.size_m)

    def describe(self) -> str:
        """``osm:bund`` or ``synthetic central seed 7``."""
        return f"osm:{self.folder}" if self.kind == "osm" else f"synthetic {self.profile} seed {self.seed}"


@dataclass(frozen=True)
class DistrictSpec:
    """One twin of the city: a district, or one tile of a district listed with ``tiles``.

    ``partition`` is the stream's partition key: the adcode (``310101``), or ``<adcode>-t<k>`` for the k-th tile
    (``310115-t2``, docs/city-deployment.md section 4).
    """

    code: str
    partition: str
    name: str
    name_en: str
    cell_m: float
    source: SourceSpec
    tile: int | None = None

    def area(self, boundaries: Boundaries) -> shapely.Geometry:
        """The ground this twin covers: its district cut to its source's extent (lon/lat)."""
        return cut(boundaries[self.code].geometry, self.source.extent())


@dataclass(frozen=True)
class StreamSettings:
    """The partitioned stream (NATS JetStream): server URL, stream name, how long records are kept [s], and the
    subject prefix of its partitions (partition ``p`` is subject ``subjects + p``). Two cities on one NATS server
    need two streams and two subject prefixes: a JetStream server refuses a stream whose subjects overlap
    another's."""

    url: str
    name: str
    max_age_s: float
    subjects: str = DEFAULTS["subjects"]


@dataclass(frozen=True)
class MqttSettings:
    """The MQTT broker devices publish to, and the topic prefix."""

    broker: str
    prefix: str


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: plain values, nothing built (`twin.city.districts.City` builds)."""

    path: Path
    code: str
    name: str
    name_en: str
    tick_s: float
    stream: StreamSettings
    mqtt: MqttSettings
    boundaries: Boundaries
    registries: tuple[Path, ...]
    districts: tuple[DistrictSpec, ...]


# ---------------------------------------------------------------- reading
def read_manifest_text(path: Path) -> str:
    """The manifest's text (at most `MAX_FILE_BYTES`); `ManifestError` if it cannot be read."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ManifestError([f"{path} is {size:,} bytes; a manifest is at most {MAX_FILE_BYTES:,}"], str(path))
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"], str(path)) from None


def parse_yaml(text: str, source: str = "manifest") -> Any:
    """The YAML document, loaded safely; `ManifestError` (one problem) on bad syntax or a tag."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ManifestError([f"{where}not valid YAML (plain YAML only, loaded safely): "
                             f"{getattr(exc, 'problem', None) or exc}"], source) from None


def load_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest file; `ManifestError` lists every problem."""
    path = Path(path)
    return manifest_from_dict(parse_yaml(read_manifest_text(path), str(path)), path)


def manifest_from_dict(doc: Any, path: Path) -> Manifest:
    """Check a parsed manifest (``path`` names it and anchors its relative paths); `ManifestError` lists every
    problem."""
    check = _Checker()
    if not isinstance(doc, dict):
        raise ManifestError(["the manifest must be a mapping of keys (city, districts, ...)"], str(path))
    check.keys(doc, TOP_KEYS, "")
    city = check.mapping(doc.get("city", {}), "city", CITY_KEYS)
    stream = check.mapping(doc.get("stream", {}), "stream", STREAM_KEYS)
    mqtt = check.mapping(doc.get("mqtt", {}), "mqtt", MQTT_KEYS)
    tick_s = check.number(doc.get("tick_s", DEFAULTS["tick_s"]), "tick_s", (0.1, 3600.0))
    cell_m = check.number(doc.get("cell_m", DEFAULTS["cell_m"]), "cell_m", CELL_RANGE_M)
    settings = (StreamSettings(check.url(stream.get("url", DEFAULTS["stream_url"]), "stream.url", ("nats", "tls")),
                               check.name(stream.get("name", DEFAULTS["stream_name"]), "stream.name"),
                               3600.0 * check.number(stream.get("max_age_h", DEFAULTS["max_age_h"]),
                                                     "stream.max_age_h", (0.01, 24.0 * 365)),
                               check.subjects(stream.get("subjects", DEFAULTS["subjects"]))),
                MqttSettings(check.url(mqtt.get("broker", DEFAULTS["broker"]), "mqtt.broker", ("mqtt", "mqtts")),
                             check.prefix(mqtt.get("prefix", DEFAULTS["prefix"]))))
    boundaries = check.boundaries(doc.get("boundaries", "bundled"), path.parent)
    registries = check.registries(doc.get("registry", []), path.parent)
    districts = check.districts(doc.get("districts"), boundaries, cell_m)
    if check.problems:
        raise ManifestError(check.problems, str(path))
    assert boundaries is not None
    code = str(city.get("code", "") or "")
    name = str(city.get("name", "") or path.stem)
    return Manifest(path, code, name, str(city.get("name_en", "") or name), tick_s, *settings, boundaries,
                    registries, tuple(districts))


# ---------------------------------------------------------------- the checks
class _Checker:
    """Collects problems; every check returns a usable value (a default when the input is bad)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}" if where else text)

    def keys(self, doc: dict, allowed: tuple[str, ...], where: str) -> None:
        for key in doc:
            if key not in allowed:
                self.add(where or "manifest", f"unknown key {str(key)[:40]!r} (known: {', '.join(allowed)})")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            self.add(where, f"must be a mapping ({', '.join(allowed)}), got {type(value).__name__}")
            return {}
        self.keys(value, allowed, where)
        return value

    def number(self, value: Any, where: str, bounds: tuple[float, float]) -> float:
        lo, hi = bounds
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not lo <= value <= hi:
            self.add(where, f"must be a number from {lo:g} to {hi:g}, got {value!r}")
            return lo
        return float(value)

    def name(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value):
            self.add(where, f"must be letters, digits, '-' or '_', got {value!r}")
            return "X"
        return value

    def subjects(self, value: Any) -> str:
        if not isinstance(value, str) or not _SUBJECTS.match(value):
            self.add("stream.subjects", f"must be a NATS subject prefix of tokens (letters, digits, '-' or '_') each "
                                        f"ending in '.', e.g. twin.batches., got {value!r}")
            return DEFAULTS["subjects"]
        return value

    def url(self, value: Any, where: str, schemes: tuple[str, ...]) -> str:
        scheme = value.split("://", 1)[0] if isinstance(value, str) and "://" in value else ""
        if scheme not in schemes or not value.split("://", 1)[1]:
            self.add(where, f"must be a URL {' or '.join(s + '://host:port' for s in schemes)}, got {value!r}")
        return str(value)

    def prefix(self, value: Any) -> str:
        if not isinstance(value, str) or (value and not value.endswith("/")) or set("+#") & set(value or ""):
            self.add("mqtt.prefix", f"must be a topic prefix ending in '/' without '+' or '#', got {value!r}")
            return DEFAULTS["prefix"]
        return value

    def boundaries(self, value: Any, base: Path) -> Boundaries | None:
        if not isinstance(value, str) or not value:
            self.add("boundaries", f"must be 'bundled' or a path, got {value!r}")
            return None
        try:
            return read_boundaries(None if value == "bundled" else base / value)
        except BoundaryError as exc:
            self.add("boundaries", str(exc))
            return None

    def registries(self, value: Any, base: Path) -> tuple[Path, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            self.add("registry", f"must be a list of 'bundled:<folder>' or paths, got {value!r}")
            return ()
        out = []
        for k, item in enumerate(items):
            path = data_dir() / item.removeprefix("bundled:") / "registry.geojson" if item.startswith(
                "bundled:") else base / item
            if not path.is_file():
                self.add(f"registry[{k}]", f"no registry file {path}")
            out.append(path)
        return tuple(out)

    def districts(self, value: Any, boundaries: Boundaries | None, cell_m: float) -> list[DistrictSpec]:
        if not isinstance(value, list) or not value:
            self.add("districts", "must be a non-empty list of districts")
            return []
        out: list[DistrictSpec] = []
        seen: set[str] = set()
        for k, entry in enumerate(value):
            out += self.district(entry, f"districts[{k}]", boundaries, cell_m, seen)
        return out

    def district(self, entry: Any, where: str, boundaries: Boundaries | None, cell_m: float,
                 seen: set[str]) -> list[DistrictSpec]:
        entry = self.mapping(entry, where, DISTRICT_KEYS)
        code = str(entry.get("code", "")).strip()
        if not code:
            self.add(where, "has no code (the district's adcode)")
            return []
        where = f"{where} ({code})"
        if code in seen:
            self.add(where, "duplicate code")
        seen.add(code)
        if boundaries is not None and code not in boundaries:
            self.add(where, f"code {code} is not in the boundaries {boundaries.source.name} (known: "
                            f"{', '.join(boundaries.codes)})")
            return []
        name, name_en = self._names(entry, code, boundaries, where)
        cell = self.number(entry.get("cell_m", cell_m), f"{where}.cell_m", CELL_RANGE_M)
        if "tiles" in entry:
            return self._tiles(entry, code, name, name_en, cell, where, boundaries)
        source = self.source(entry, where, boundaries, code)
        return [DistrictSpec(code, code, name, name_en, cell, source)] if source else []

    def _names(self, entry: dict, code: str, boundaries: Boundaries | None, where: str) -> tuple[str, str]:
        known = boundaries[code] if boundaries is not None else None
        name = entry.get("name", known.name if known else code)
        name_en = entry.get("name_en", known.name_en if known else name)
        for key, text in (("name", name), ("name_en", name_en)):
            if not isinstance(text, str) or not text.strip():
                self.add(f"{where}.{key}", f"must be a non-empty text, got {text!r}")
        return str(name), str(name_en)

    def _tiles(self, entry: dict, code: str, name: str, name_en: str, cell: float, where: str,
               boundaries: Boundaries | None) -> list[DistrictSpec]:
        tiles = entry["tiles"]
        stray = [k for k in SOURCE_KEYS if k in entry]
        if stray:
            self.add(where, f"has tiles and {', '.join(stray)}: give the source of each tile in its entry")
        if not isinstance(tiles, list) or not tiles:
            self.add(f"{where}.tiles", "must be a non-empty list of tiles")
            return []
        out = []
        for k, tile in enumerate(tiles, start=1):
            at = f"{where}.tiles[{k - 1}]"
            tile = self.mapping(tile, at, TILE_KEYS)
            source = self.source(tile, at, boundaries, code)
            tile_cell = self.number(tile.get("cell_m", cell), f"{at}.cell_m", CELL_RANGE_M)
            if source:
                out.append(DistrictSpec(code, f"{code}-t{k}", f"{name} {k}", f"{name_en} tile {k}", tile_cell,
                                        source, k))
        if boundaries is not None:
            self._overlaps(out, boundaries, where)
        return out

    def _overlaps(self, tiles: list[DistrictSpec], boundaries: Boundaries, where: str) -> None:
        from twin.city.boundaries import projected

        areas = [projected(t.area(boundaries)) for t in tiles]
        for i in range(len(tiles)):
            for j in range(i + 1, len(tiles)):
                shared = shapely.intersection(areas[i], areas[j]).area
                if shared > OVERLAP_M2:
                    self.add(where, f"tiles {tiles[i].tile} and {tiles[j].tile} overlap by {shared / 1e6:.3f} km2")

    def source(self, entry: dict, where: str, boundaries: Boundaries | None, code: str) -> SourceSpec | None:
        text = entry.get("source")
        if not isinstance(text, str) or not (text == "synthetic" or text.startswith("osm:")):
            self.add(f"{where}.source", f"must be 'osm:<bundled folder>' or 'synthetic', got {text!r}")
            return None
        bbox = self._bbox(entry.get("bbox"), f"{where}.bbox") if "bbox" in entry else None
        if "bbox" in entry and bbox is None:
            return None  # reported
        if text.startswith("osm:"):
            spec = self._osm(entry, text.removeprefix("osm:"), bbox, where)
        else:
            spec = self._synthetic(entry, bbox, where)
        if spec is None or boundaries is None:
            return spec
        boundary = boundaries[code]
        if spec.centre is not None and not shapely.contains_xy(boundary.geometry, *spec.centre):
            self.add(f"{where}.centre", f"{list(spec.centre)} is outside district {code} ({boundary.name_en})")
        elif shapely.intersection(boundary.geometry, spec.extent()).area == 0:
            self.add(where, f"the source's extent does not meet district {code} ({boundary.name_en})")
        return spec

    def _osm(self, entry: dict, folder: str, bbox, where: str) -> SourceSpec | None:
        for key in ("seed", "profile", "centre", "size_m"):
            if key in entry:
                self.add(f"{where}.{key}", "applies to synthetic sources only")
        if not (data_dir() / folder / "buildings.geojson").is_file():
            known = sorted(p.name for p in data_dir().iterdir() if (p / "buildings.geojson").is_file())
            self.add(f"{where}.source", f"no bundled district folder {folder!r} (bundled: {', '.join(known)})")
            return None
        return SourceSpec("osm", folder, bbox=bbox)

    def _synthetic(self, entry: dict, bbox, where: str) -> SourceSpec | None:
        seed = entry.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            self.add(f"{where}.seed", f"a synthetic source needs a seed (an integer >= 0), got {seed!r}")
            seed = 0
        profile = entry.get("profile", DEFAULTS["profile"])
        if profile not in PROFILES:
            self.add(f"{where}.profile", f"must be one of {', '.join(PROFILES)}, got {profile!r}")
        centre = size = None
        if bbox is None:
            centre = self._point(entry.get("centre"), f"{where}.centre")
            size = self._size(entry.get("size_m", DEFAULTS["size_m"]), f"{where}.size_m")
        elif "centre" in entry or "size_m" in entry:
            self.add(where, "give either bbox or centre and size_m, not both")
        if bbox is None and centre is None:
            return None
        return SourceSpec("synthetic", "", int(seed), str(profile), centre, size, bbox)

    def _point(self, value: Any, where: str) -> tuple[float, float] | None:
        if not (isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
                and -180 <= value[0] <= 180 and -90 <= value[1] <= 90):
            self.add(where, f"must be [lon, lat] in degrees, got {value!r}")
            return None
        return float(value[0]), float(value[1])

    def _size(self, value: Any, where: str) -> tuple[float, float]:
        pair = value if isinstance(value, list) else [value, value]
        if len(pair) != 2:
            self.add(where, f"must be a side or [width, height] in metres, got {value!r}")
            return SIZE_RANGE_M[0], SIZE_RANGE_M[0]
        w, h = (self.number(v, where, SIZE_RANGE_M) for v in pair)
        return w, h

    def _bbox(self, value: Any, where: str) -> tuple[float, float, float, float] | None:
        ok = isinstance(value, list) and len(value) == 4 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        if not ok or not (-180 <= value[0] < value[2] <= 180 and -90 <= value[1] < value[3] <= 90):
            self.add(where, f"must be [west, south, east, north] in degrees, got {value!r}")
            return None
        return tuple(float(v) for v in value)  # type: ignore[return-value]
