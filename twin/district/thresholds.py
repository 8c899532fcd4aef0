"""Per-place crowd density bands: stairs, ramps and bridges that need stricter bands than the district's.

The district's crowd bands (`models.config.CrowdConfig.density_raise` / ``density_clear``: blue 1.08, yellow 2,
orange 4, red 5 person/m2) are for open walkways and squares. A stair, a ramp or a narrow bridge deck turns
dangerous at lower densities (people cannot step aside, a fall takes others with it), so a place can have bands
of its own (docs/science/alerts.md, "Per-place bands"; docs/science/crowd.md 1.1 for the stairway source). A
thresholds file names the places and their bands; the live twin (`twin.live.models.LiveConfig.place_bands_file`,
``twin run --crowd-bands FILE``) and the scenarios (``grid.crowd_bands`` in a scenario file,
`scenarios.forcing.prepare`) apply the same file the same way, and every crowd alert names the bands that applied
in its area (the CAP parameter ``densityBands``, docs/contract/cap.md).

File format: a GeoJSON FeatureCollection in CGCS2000 (= WGS84 here) lon/lat. Each feature is a Polygon or
MultiPolygon (one feature per place: a place in several parts is a MultiPolygon) with the properties

* ``name`` (text, unique in the file): what the alert calls the place, e.g. "Lujiazui Exit 1 stair";
* ``kind``: ``stair``, ``ramp``, ``bridge`` or ``other``;
* ``density_raise``: four numbers [person m-2], blue, yellow, orange, red: a colour is raised at or above its
  threshold; ``null`` or ``"inf"`` for a colour the place does not use;
* ``density_clear``: four numbers [person m-2]: a colour is held while the density stays at or above it; below
  its raise threshold (hysteresis), ``null`` or ``"inf"`` where the colour is unused;
* ``source`` (text, optional but expected): where the bands come from, with an evidence tag
  ([src], [mem], [run], [design]; docs/science/README.md).

The bands follow `models.config.PlaceBands`' rules: a used colour has 0 < clear < raise, and the used thresholds
do not decrease from blue to red. Example::

    {"type": "FeatureCollection", "features": [
      {"type": "Feature",
       "properties": {"name": "Lujiazui Exit 1 stair", "kind": "stair",
                      "density_raise": [1.11, 1.43, 2.5, 3.5], "density_clear": [0.89, 1.14, 2.0, 2.8],
                      "source": "Fruin (1971) stairway LOS D/E/F [mem]; red [design]"},
       "geometry": {"type": "Polygon", "coordinates": [[[121.4970, 31.2405], ...]]}}]}

Which cells are a place's (`crowd_band_layer`): a cell belongs to a place when **at least half of its area** is
inside the place's polygon (the exact area-weighted overlap, `twin.district.coverage.overlap_areas`). Features are
taken in file order and a later one wins where two claim a cell. So a place narrower than half a cell (a 1.2 m
stair on a 10 m grid) claims no cell: draw the polygon as the zone the bands should govern (the stair with its
head and foot), at least half a cell wide. The result is the grid layer ``crowd_band`` (int8): 0 the district's
bands, j the j-th feature of the file; `apply_place_bands` returns it with the `models.config.PlaceBands` of
every feature, in file order, for `models.config.RiskConfig.place_bands`.

Every problem of a file is listed at once in one `PlaceBandsError` (a ``ValueError``), each under its feature.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import xarray as xr

from models.config import MAX_PLACE_BANDS, PLACE_KINDS, PlaceBands
from twin.district.coverage import overlap_areas
from twin.district.dataset import grid_of, layer_variable
from twin.district.grid import GridSpec
from twin.district.walkable import polygon_of, projected_polygons, read_geojson

log = logging.getLogger(__name__)

MIN_SHARE = 0.5
"""A cell belongs to a place when at least this share of its area is inside the place's polygon. [1]"""
COLOURS = ("blue", "yellow", "orange", "red")


class PlaceBandsError(ValueError):
    """The thresholds file is invalid; ``problems`` lists every problem found (the message is one line)."""

    def __init__(self, problems: list[str], source: str = "crowd bands") -> None:
        text = f"{source}: {len(problems)} problem(s): " + "; ".join(problems[:20])
        super().__init__(" ".join(text.split()))  # one line, whatever the file's names hold
        self.problems = problems


@dataclass(frozen=True)
class BandedPlace:
    """One place of a thresholds file: its lon/lat geometry and its bands."""

    geometry: shapely.Geometry
    bands: PlaceBands


def _threshold(value: Any) -> float | None:
    """A threshold of the file as a float (``null`` and ``"inf"``: inf); None if it is not one."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("inf", "infinity")):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _thresholds(where: str, props: dict, key: str, problems: list[str]) -> tuple[float, ...] | None:
    values = props.get(key)
    if not isinstance(values, list) or len(values) != 4:
        problems.append(f"{where}: {key} must be a list of four numbers, blue to red in person/m2, null or "
                        f"\"inf\" for an unused colour (got {values!r})")
        return None
    out = [_threshold(v) for v in values]
    bad = [f"{c} {v!r}" for c, v, t in zip(COLOURS, values, out, strict=True) if t is None]
    if bad:
        problems.append(f"{where}: {key}: not a number, null or \"inf\": {', '.join(bad)}")
        return None
    return tuple(out)  # type: ignore[arg-type]


def _place(i: int, feature: Any, problems: list[str], names: dict[str, int]) -> BandedPlace | None:
    where = f"feature {i}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        problems.append(f"{where}: not a GeoJSON Feature")
        return None
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        problems.append(f"{where}: properties must be an object")
        return None
    name = props.get("name")
    n_before = len(problems)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: name must be a non-empty text (what the alert calls the place)")
    else:
        where = f"{where} ({name})"
        if name in names:
            problems.append(f"{where}: name also used by feature {names[name]} (one feature per place; a place in "
                            "several parts is a MultiPolygon)")
        names.setdefault(name, i)
    kind = props.get("kind")
    if kind not in PLACE_KINDS:
        problems.append(f"{where}: kind must be one of {', '.join(PLACE_KINDS)} (got {kind!r})")
    source = props.get("source", "")
    if not isinstance(source, str):
        problems.append(f"{where}: source must be a text (the citation of the bands; got {source!r})")
    up = _thresholds(where, props, "density_raise", problems)
    down = _thresholds(where, props, "density_clear", problems)
    geom = polygon_of(where, feature, problems)
    if len(problems) > n_before or up is None or down is None or geom is None:
        return None
    try:
        bands = PlaceBands(name.strip(), kind, up, down, source.strip())
    except ValueError as exc:
        problems.append(f"{where}: {str(exc).split(': ', 1)[-1]}")
        return None
    return BandedPlace(geom, bands)


def place_bands_from_geojson(doc: Any, source: str = "crowd bands") -> list[BandedPlace]:
    """The places of a parsed GeoJSON FeatureCollection, in file order; raises `PlaceBandsError` listing every
    problem."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise PlaceBandsError(["not a GeoJSON FeatureCollection"], source)
    features = doc.get("features")
    if features is None:
        features = []
    if not isinstance(features, list):
        raise PlaceBandsError(["features must be a list"], source)
    problems: list[str] = []
    if len(features) > MAX_PLACE_BANDS:
        problems.append(f"{len(features)} features: at most {MAX_PLACE_BANDS} places")
    names: dict[str, int] = {}
    out = [_place(i, f, problems, names) for i, f in enumerate(features)]
    if problems:
        raise PlaceBandsError(problems, source)
    return [p for p in out if p is not None]


def load_place_bands(path: str | os.PathLike) -> list[BandedPlace]:
    """Read and check a thresholds file; raises `PlaceBandsError` (also for a file that is not JSON) or
    ``OSError``."""
    return place_bands_from_geojson(read_geojson(path, PlaceBandsError), str(path))


def crowd_band_layer(grid: GridSpec, places: list[BandedPlace]) -> np.ndarray:
    """The ``crowd_band`` layer (int8, the grid's shape): j where at least `MIN_SHARE` of the cell's area is inside
    the j-th place's polygon (1-based, later places win), 0 elsewhere (the district's bands)."""
    out = np.zeros(grid.size, np.int8)
    if places:
        feature, cell, area = overlap_areas(grid, projected_polygons(grid, places))
        inside = area >= MIN_SHARE * grid.cell_area * (1.0 - 1e-9)
        for j in range(len(places)):  # file order: a later place overwrites an earlier one
            out[cell[inside & (feature == j)]] = j + 1
    return out.reshape(grid.shape)


def with_place_bands(static: xr.Dataset, places: list[BandedPlace],
                     label: str = "") -> tuple[xr.Dataset, tuple[PlaceBands, ...]]:
    """A copy of the twin with the ``crowd_band`` layer of ``places``, and their bands in the layer's order
    (``RiskConfig.place_bands``). ``static`` is not modified; ``label`` (e.g. the file name) goes into the layer's
    ``comment`` with the places' numbers. A place that claims no cell of this grid is named in the comment and
    logged (the grid is too coarse for it, or it lies outside)."""
    out = static.copy()
    bands = tuple(p.bands for p in places)
    values = crowd_band_layer(grid_of(static), places)
    numbered = ", ".join(f"{j} {b.label()}" for j, b in enumerate(bands, start=1))
    note = (f"place bands{' from ' + label if label else ''}: 0 the district's"
            f"{', ' + numbered if numbered else ''}; a cell is a place's when at least half its area is inside "
            "the place's polygon, a later place winning")
    empty = [b.name for j, b in enumerate(bands, start=1) if not (values == j).any()]
    if empty:
        note += f"; no cell of this grid: {', '.join(empty)}"
        log.warning("crowd bands%s: %s claim no cell of this grid (less than half of every cell inside)",
                    f" from {label}" if label else "", ", ".join(empty))
    out["crowd_band"] = layer_variable("crowd_band", values, note)
    return out, bands


def apply_place_bands(static: xr.Dataset, path: str | os.PathLike | None) -> tuple[xr.Dataset, tuple[PlaceBands, ...]]:
    """The twin with the ``crowd_band`` layer of the thresholds file at ``path``, and the file's `PlaceBands` in
    file order (band j is ``bands[j - 1]``). ``(static, ())`` when ``path`` is None. Raises `PlaceBandsError` or
    ``OSError``."""
    if path is None:
        return static, ()
    return with_place_bands(static, load_place_bands(path), Path(path).name)


__all__ = ["MIN_SHARE", "BandedPlace", "PlaceBandsError", "apply_place_bands", "crowd_band_layer",
           "load_place_bands", "place_bands_from_geojson", "with_place_bands"]
