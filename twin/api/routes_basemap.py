"""The dashboard's base map, from the twin's own static layers and building table (no tiles, no internet).

- ``/api/basemap.png``: ground, open water and roads (by road class) in the dashboard's dark
  colours, super-sampled from the grid so that roads and banks are smooth rather than 10 m blocks;
  north up, ``X-Bounds`` in grid metres as for the layer PNGs. Static layers never change, so the
  picture is rendered once per app.
- ``/api/basemap/buildings``: the building footprints of the twin's BIM table as GeoJSON in the
  grid's projected CRS (metres, not RFC 7946 lon/lat: the ``crs`` member says which), with height,
  floors and use. Empty when the twin file has no building table.
- ``/api/basemap/projection``: polynomials between CGCS2000 lon/lat and grid metres, fitted with
  pyproj over the grid, so a browser can place alerts and units (lon/lat) on the grid-metre map and
  turn a click back into lon/lat without a projection library. The fit's largest error is reported.
- ``/api/basemap/labels``: road, water, place and point names from the twin's own district folder
  (`twin.api.labels`), in grid metres, computed once per app.
- ``/api/basemap/legend``: every colour the base map paints (ground, water, each road class, the building
  height classes the dashboard draws), bilingual.

No base-map colour may be taken for a warning level: the level colours (blue, yellow, orange, red of
``static/palette.css``) appear only on risk layers and alerts. The roads are greys, the elevated expressway a
light neutral grey (it was ochre, easily read as an orange or yellow alert), water a dark slate blue far darker
and greyer than the level blue.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import shapely
from fastapi import APIRouter, Query
from fastapi.responses import Response
from scipy import ndimage

from twin.api.labels import district_folder, map_labels
from twin.api.render import png_bytes
from twin.api.schemas import BasemapLegend, MapLabels
from twin.api.state import ApiState
from twin.district import geo
from twin.district.grid import GridSpec
from twin.district.layers import ROAD_CLASSES

log = logging.getLogger(__name__)

GROUND = (18, 25, 34)
WATER = (14, 48, 78)
BUILDING = (52, 64, 82)
ROAD = {"expressway": (176, 182, 194), "arterial": (104, 114, 128), "secondary": (82, 91, 104),
        "branch": (62, 70, 82)}
"""Base map colours (RGB): a dark operations-centre palette under the warning colours. Roads are greys, lighter
for a higher class; the expressway (in Shanghai's centre the elevated roads) the lightest, a near-white neutral
grey with no hue that could read as a warning level [design]."""
ROAD_NAMES = {"expressway": ("Elevated expressway", "高架快速路"), "arterial": ("Arterial road", "主干路"),
              "secondary": ("Secondary road", "次干路"), "branch": ("Branch road", "支路")}
"""Road classes (GB/T 33171-2016, `twin.district.layers.ROAD_CLASSES`) as the legend names them."""
BUILDING_CLASSES = ((0.0, "#2a3444"), (12.0, "#313d4f"), (24.0, "#394659"), (50.0, "#425165"), (100.0, "#4d5e74"),
                    (200.0, "#5a6d86"))
"""The building height classes the dashboard fills footprints with (lower bound [m], colour): the same as
``HEIGHT_BINS`` of ``static/map.js`` and ``.bldg.h0`` ... ``.bldg.h5`` of ``static/style.css``."""
MAX_PIXELS = 2048
"""Longest side of the base map picture. [pixel]"""
MAX_SUPERSAMPLE = 4
FOOTPRINT_TOLERANCE_M = 0.5
"""Footprints are simplified to this and rounded to 0.1 m: invisible at any useful zoom, half the bytes."""
FIT_DEGREE = 3


def smoothstep(lo: float, hi: float, v: np.ndarray) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, a smooth ramp between (edge anti-aliasing of coverage fractions)."""
    u = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _upsample(values: np.ndarray, factor: int, order: int) -> np.ndarray:
    """A cell-centred layer at ``factor`` pixels per cell: ``order`` 0 nearest (classes), 1 a Gaussian blur
    of half a cell and then bilinear (coverage fractions: no stair steps, thin roads stay continuous)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    if order == 1:
        values = ndimage.gaussian_filter(values, 0.5, mode="nearest")
    if factor > 1:
        values = ndimage.zoom(values, factor, order=order, mode="nearest", grid_mode=True)
    return values


def supersample_factor(grid: GridSpec) -> int:
    """Pixels per cell of the base map: as many as fit in `MAX_PIXELS` (1 to `MAX_SUPERSAMPLE`)."""
    return int(np.clip(MAX_PIXELS // max(grid.ny, grid.nx), 1, MAX_SUPERSAMPLE))


def _paint(rgb: np.ndarray, colour: tuple[int, int, int], alpha: np.ndarray) -> None:
    """Blend ``colour`` over ``rgb`` (float, in place) with per-pixel ``alpha`` in 0..1."""
    rgb += (np.asarray(colour, dtype=np.float32) - rgb) * alpha[..., None]


def basemap_rgba(static, grid: GridSpec, with_buildings: bool = False) -> np.ndarray:
    """RGBA pixels (north up) of ground, water, roads and, with ``with_buildings``, building cover.

    Coverage fractions are interpolated between cell centres and passed through a smooth step, so
    a road that covers half of a row of cells is drawn as a band with soft edges. A layer the twin
    does not have is left out.
    """
    f = supersample_factor(grid)
    shape = (grid.ny * f, grid.nx * f)
    rgb = np.empty((*shape, 3), dtype=np.float32)
    rgb[:] = GROUND
    names = set(static.data_vars)
    water = static["water_fraction"] if "water_fraction" in names else static.get("water_mask")
    if water is not None:
        _paint(rgb, WATER, smoothstep(0.25, 0.6, _upsample(water.values, f, 1)))
    if "road_fraction" in names:
        cover = smoothstep(0.08, 0.4, _upsample(static["road_fraction"].values, f, 1))
        cls = (_upsample(static["road_class"].values, f, 0).astype(int) if "road_class" in names
               else np.full(shape, ROAD_CLASSES.index("branch")))
        for code, name in enumerate(ROAD_CLASSES):
            if name in ROAD:
                _paint(rgb, ROAD[name], np.where(cls == code, cover, 0.0))
    if with_buildings and "building_fraction" in names:
        _paint(rgb, BUILDING, 0.9 * smoothstep(0.2, 0.6, _upsample(static["building_fraction"].values, f, 1)))
    out = np.empty((*shape, 4), dtype=np.uint8)
    out[..., :3] = np.round(rgb).astype(np.uint8)
    out[..., 3] = 255
    return out


def buildings_geojson(buildings, static) -> dict:
    """The building footprints of a `twin.district.bim.Buildings` (none if None) as a FeatureCollection in the
    grid CRS of ``static`` (see the module docstring)."""
    crs = str(static.attrs.get("grid_crs", ""))
    features: list[dict] = []
    if buildings is not None:
        table = buildings.table
        geoms = shapely.set_precision(shapely.simplify(table.geometry.values, FOOTPRINT_TOLERANCE_M), 0.1)
        for row, geom in zip(table.itertuples(index=False), geoms, strict=True):
            if geom is None or geom.is_empty:
                continue
            props = {"id": str(row.id), "name": row.name if isinstance(row.name, str) else None,
                     "use": row.use if isinstance(row.use, str) else None,
                     "height": _finite(row.height), "floors": _finite(row.floors)}
            features.append({"type": "Feature", "geometry": shapely.geometry.mapping(geom), "properties": props})
    return {"type": "FeatureCollection", "crs": crs, "units": "m", "features": features}


def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return round(v, 1) if np.isfinite(v) else None


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def basemap_legend(static, with_buildings: bool) -> dict:
    """Every colour the base map paints, in drawing order: ``{"items": [{"key", "name", "name_en", "colour",
    "shape"}]}``. ``with_buildings``: the twin has a building table, so the dashboard draws footprints by height
    class (`BUILDING_CLASSES`); else ``/api/basemap.png?buildings=true`` shades building cover (`BUILDING`)."""
    names = set(static.data_vars)
    items = [{"key": "ground", "name": "地面", "name_en": "Ground", "colour": _hex(GROUND), "shape": "fill"}]
    if "water_fraction" in names or "water_mask" in names:
        items.append({"key": "water", "name": "水域", "name_en": "Water", "colour": _hex(WATER), "shape": "fill"})
    if "road_fraction" in names:
        for cls, rgb in ROAD.items():
            en, zh = ROAD_NAMES[cls]
            items.append({"key": f"road_{cls}", "name": zh, "name_en": en, "colour": _hex(rgb), "shape": "line"})
    if with_buildings:
        bounds = [lo for lo, _ in BUILDING_CLASSES[1:]]
        for k, (lo, colour) in enumerate(BUILDING_CLASSES):
            hi = bounds[k] if k < len(bounds) else None
            span_en = f"{lo:g}–{hi:g} m" if hi is not None else f"≥ {lo:g} m"
            span_zh = f"{lo:g}–{hi:g} 米" if hi is not None else f"≥ {lo:g} 米"
            items.append({"key": f"building_h{k}", "name": f"建筑 {span_zh}", "name_en": f"Building {span_en}",
                          "colour": colour, "shape": "fill"})
    elif "building_fraction" in names:
        items.append({"key": "building", "name": "建筑覆盖", "name_en": "Building cover", "colour": _hex(BUILDING),
                      "shape": "fill"})
    return {"items": items}


def _terms(degree: int) -> list[tuple[int, int]]:
    return [(i, n - i) for n in range(degree + 1) for i in range(n, -1, -1)]


def _design(u: np.ndarray, v: np.ndarray, terms: list[tuple[int, int]]) -> np.ndarray:
    return np.stack([u**i * v**j for i, j in terms], axis=-1)


def projection_fit(grid: GridSpec, degree: int = FIT_DEGREE, samples: int = 21) -> dict:
    """Polynomials lon/lat -> grid x/y and back, fitted over the grid plus a 25 % margin.

    Forward: ``x = x0 + sum(cx[k] * du**i * dv**j)`` with ``du = lon - lon0``, ``dv = lat - lat0``
    [deg] and ``(i, j) = terms[k]``; the same for ``y``. Inverse: ``lon = lon0 + sum(clon[k] *
    dx**i * dy**j)`` with ``dx = (x - x0) / 1000``, ``dy = (y - y0) / 1000`` [km]. ``max_error_m`` is
    the largest error of either direction at points between the fitted ones. [m]
    """
    west, south, east, north = grid.bounds_lonlat
    pad_lon, pad_lat = 0.25 * (east - west), 0.25 * (north - south)
    lon0, lat0 = 0.5 * (west + east), 0.5 * (south + north)
    x0, y0 = (float(v) for v in geo.to_projected(lon0, lat0, grid.crs))
    terms = _terms(degree)

    def sample(n: int, shift: float) -> tuple[np.ndarray, ...]:
        t = (np.arange(n) + shift) / (n - 1)
        lon, lat = np.meshgrid(west - pad_lon + t * (east - west + 2 * pad_lon),
                               south - pad_lat + t * (north - south + 2 * pad_lat))
        x, y = geo.to_projected(lon.ravel(), lat.ravel(), grid.crs)
        return lon.ravel() - lon0, lat.ravel() - lat0, (np.asarray(x) - x0) / 1e3, (np.asarray(y) - y0) / 1e3

    du, dv, dx, dy = sample(samples, 0.0)
    fwd, inv = _design(du, dv, terms), _design(dx, dy, terms)
    cx, cy = (np.linalg.lstsq(fwd, 1e3 * d, rcond=None)[0] for d in (dx, dy))
    clon, clat = (np.linalg.lstsq(inv, d, rcond=None)[0] for d in (du, dv))
    # check between the fitted points
    du, dv, dx, dy = sample(samples - 1, 0.5)
    fwd_err = np.hypot(_design(du, dv, terms) @ cx - 1e3 * dx, _design(du, dv, terms) @ cy - 1e3 * dy)
    lon_back, lat_back = _design(dx, dy, terms) @ clon + lon0, _design(dx, dy, terms) @ clat + lat0
    xb, yb = geo.to_projected(lon_back, lat_back, grid.crs)
    inv_err = np.hypot(np.asarray(xb) - x0 - 1e3 * dx, np.asarray(yb) - y0 - 1e3 * dy)
    return {"crs": grid.crs, "terms": [list(t) for t in terms], "lon0": lon0, "lat0": lat0, "x0": x0, "y0": y0,
            "cx": cx.tolist(), "cy": cy.tolist(), "inverse_scale_m": 1000.0, "clon": clon.tolist(),
            "clat": clat.tolist(), "max_error_m": float(max(fwd_err.max(), inv_err.max()))}


def basemap_routes(state: ApiState) -> APIRouter:
    """The router of the base map (rendered once, then served from memory)."""
    view = state.view
    r = APIRouter(prefix="/api/basemap", tags=["base map"])

    @functools.cache
    def picture(with_buildings: bool) -> bytes:
        return png_bytes(basemap_rgba(view.static, view.grid, with_buildings))

    footprints = functools.cache(lambda: buildings_geojson(view.buildings(), view.static))
    projection = functools.cache(lambda: projection_fit(view.grid))
    labels = functools.cache(lambda: map_labels(district_folder(view.static), view.grid))
    legend = functools.cache(lambda: basemap_legend(view.static, view.buildings() is not None))

    @r.get(".png", response_class=Response,
           responses={200: {"content": {"image/png": {}}, "description": "north up, smooth edges"}})
    def basemap_png(buildings: bool = Query(False, description="also shade building cover from the grid "
                                                               "(for twins without a building table)")
                    ) -> Response:
        """The base map: ground, open water and roads by class, from the twin's static layers. Header
        ``X-Bounds``: xmin,ymin,xmax,ymax of the picture in the grid CRS [m]."""
        bounds = ",".join(f"{v:.3f}" for v in view.grid.bounds)
        return Response(picture(buildings), media_type="image/png",
                        headers={"X-Bounds": bounds, "Cache-Control": "max-age=3600"})

    @r.get("/buildings")
    def basemap_buildings() -> dict:
        """Building footprints (GeoJSON in the grid CRS, metres) with id, name, use, height [m], floors."""
        return footprints()

    @r.get("/projection")
    def basemap_projection() -> dict:
        """Polynomials between lon/lat (CGCS2000) and grid metres, and their largest error [m]."""
        return projection()

    @r.get("/labels", response_model=MapLabels)
    def basemap_labels() -> dict:
        """Road, water, place, district, metro and point-of-interest names from the twin's own district folder,
        in the grid CRS [m], most important first: ``id``, ``kind``, ``name`` (Chinese where the data has it),
        ``name_en`` (null if none), ``x``, ``y``, ``angle_deg`` (text rotation, counter-clockwise from east,
        -90..90), ``rank`` (1 most important) and ``length_m`` (the named line a road or river label is on)."""
        return labels()

    @r.get("/legend", response_model=BasemapLegend)
    def basemap_legend_route() -> dict:
        """Every colour the base map paints (ground, water, each road class with the elevated expressway, the
        building height classes), in drawing order, with Chinese and English names."""
        return legend()

    return r
