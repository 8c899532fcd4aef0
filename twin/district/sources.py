"""Reading a district's vector layers from a folder.

A district folder holds GeoJSON layers named by what they are: ``buildings.geojson``
(required; a CityJSON ``buildings.json`` works too), and optionally ``roads``, ``water``,
``landuse``, ``pois``, ``transit``
(each ``.geojson``, also ``.gpkg`` or ``.shp``), a DEM (``dem.asc``, ESRI ASCII grid, with
its CRS in ``dem.prj`` or given on the command line) and drainage overrides
(``drainage.geojson``: polygons with a ``drainage_capacity`` property in mm/h).
Any layer file geopandas can read (GeoJSON, GeoPackage, Shapefile) works.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd

OSM_CREDIT = "© OpenStreetMap contributors, ODbL 1.0"
OPTIONAL_LAYERS = ("roads", "water", "landuse", "pois", "transit")
SUFFIXES = (".geojson", ".gpkg", ".shp", ".json")


class SourceError(ValueError):
    """A district folder or one of its files cannot be used."""


def data_dir() -> Path:
    """The project's ``data/`` folder (``CITYTWIN_DATA`` overrides it)."""
    env = os.environ.get("CITYTWIN_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def bundled_district(name: str) -> Path:
    """Folder of a district shipped with the project, e.g. ``bund``."""
    path = data_dir() / name
    if not (path / "buildings.geojson").is_file():
        known = sorted(p.name for p in data_dir().iterdir() if (p / "buildings.geojson").is_file())
        raise SourceError(f"no bundled district {name!r}; bundled: {', '.join(known) or 'none'}")
    return path


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _read_geojson(path: Path) -> gpd.GeoDataFrame:
    """GeoJSON read directly: GDAL would treat a property called ``id`` as the feature id and
    renumber duplicates, but OSM tiles repeat ids on purpose (pieces clipped at tile edges)."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if doc.get("type") == "CityJSON":
        from twin.district.cityjson import read_cityjson

        return read_cityjson(path)
    if doc.get("type") != "FeatureCollection":
        raise ValueError("not a GeoJSON FeatureCollection")
    features = [f for f in doc.get("features", []) if f.get("geometry")]
    crs = "EPSG:4326"
    name = (doc.get("crs") or {}).get("properties", {}).get("name", "")
    if name and "CRS84" not in name and "4326" not in name:
        crs = name
    if not features:
        return gpd.GeoDataFrame(geometry=[], crs=crs)
    return gpd.GeoDataFrame.from_features(features, crs=crs)


def read_layer(path: Path) -> gpd.GeoDataFrame:
    """Read one vector layer, in lon/lat (EPSG:4326) when the file names no CRS."""
    try:
        df = _read_geojson(path) if path.suffix in (".geojson", ".json") else gpd.read_file(path)
    except Exception as exc:  # pyogrio and json raise several unrelated types for unreadable files
        raise SourceError(f"cannot read {path}: {exc}") from None
    if df.crs is None:
        df = df.set_crs("EPSG:4326")
    return df


@dataclass
class DistrictSources:
    """The vector layers of a district, each a GeoDataFrame (empty when absent)."""

    folder: Path
    buildings: gpd.GeoDataFrame
    layers: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    dem: Path | None = None
    dem_crs: str | None = None
    drainage: gpd.GeoDataFrame | None = None

    def credit(self) -> str:
        """Attribution the data needs: ``CREDIT.txt`` in the folder, else OpenStreetMap's when the
        features say they come from OpenStreetMap (a ``source`` property, as in Nextzen tiles)."""
        credit_file = self.folder / "CREDIT.txt"
        if credit_file.is_file():
            return credit_file.read_text(encoding="utf-8").strip().splitlines()[0]
        for df in (self.buildings, *self.layers.values()):
            if "source" in df.columns and df["source"].astype(str).str.contains("openstreetmap").any():
                return OSM_CREDIT
        return ""

    def layer(self, name: str) -> gpd.GeoDataFrame:
        """An optional layer, or an empty frame in EPSG:4326 when the folder has none."""
        return self.layers.get(name, gpd.GeoDataFrame(geometry=[], crs="EPSG:4326"))


def read_district(folder: str | Path, dem: str | Path | None = None, dem_crs: str | None = None,
                  drainage: str | Path | None = None) -> DistrictSources:
    """Read a district folder (see the module docstring for its layout)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"source folder {folder} does not exist")
    bpath = _find(folder, "buildings")
    if bpath is None:
        raise SourceError(f"{folder} has no buildings layer (buildings.geojson is required)")
    buildings = read_layer(bpath)
    if not buildings.geometry.geom_type.isin(["Polygon", "MultiPolygon"]).any():
        raise SourceError(f"{bpath} holds no Polygon or MultiPolygon features (building footprints)")
    layers = {name: read_layer(p) for name in OPTIONAL_LAYERS if (p := _find(folder, name))}
    dem_path = Path(dem) if dem else (folder / "dem.asc" if (folder / "dem.asc").is_file() else None)
    if dem_path is not None and not dem_path.is_file():
        raise SourceError(f"DEM {dem_path} does not exist")
    drainage_path = Path(drainage) if drainage else _find(folder, "drainage")
    drain = read_layer(drainage_path) if drainage_path else None
    if drain is not None and "drainage_capacity" not in drain.columns:
        raise SourceError(f"{drainage_path} has no 'drainage_capacity' property (mm/h)")
    return DistrictSources(folder, buildings, layers, dem_path, dem_crs, drain)
