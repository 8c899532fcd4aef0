"""Grid twin files: build one from district sources with progress, describe one (`twin grid build | info`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from twin.district.build import twin_from_sources
from twin.district.dataset import grid_of, load_twin, save_twin
from twin.district.grid import DEFAULT_CRS
from twin.district.sources import bundled_district, read_district

STAGES = ("read", "buildings", "roads", "water and land use", "underpasses and vulnerability",
          "elevation and drainage", "write")
SHANGHAI_TOWER_LONLAT = (121.50545, 31.23345)
"""Approximate WGS84 position of the Shanghai Tower (OSM way 165792123), used when a twin has no
building table."""


def build_grid_file(*, out: Path, cell: float, district: str | None = None, source: Path | None = None,
                    bbox=None, crs: str = DEFAULT_CRS, dem: Path | None = None, dem_crs: str | None = None,
                    drainage: Path | None = None, progress: bool = True) -> Path:
    """Build a district's grid twin and write it (NetCDF + building GeoParquet). Returns the path."""
    folder = Path(source).resolve() if source else bundled_district(district or "bund")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name such as {out / 'twin.nc'}")
    with tqdm(total=len(STAGES), desc=f"grid {cell:g} m", unit="step", disable=not progress, leave=False,
              bar_format="{desc}: {n_fmt}/{total_fmt} {bar} {elapsed} {postfix}") as bar:

        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        bar.set_postfix_str("read")
        sources = read_district(folder, dem=dem, dem_crs=dem_crs, drainage=drainage)
        ds, buildings = twin_from_sources(sources, cell, bbox=bbox, crs=crs, progress=step,
                                          name=district or folder.name)
        step("write")
        path = save_twin(out, ds, buildings)
        bar.update(1)
    return path


def _tower_line(ds, buildings) -> str | None:
    from twin.district.geo import beidou_encode

    grid = grid_of(ds)
    if buildings is not None and (buildings.table["name"] == "Shanghai Tower").any():
        c = buildings.table.loc[buildings.table["name"] == "Shanghai Tower"].geometry.iloc[0].centroid
        row, col = grid.cell_of(c.x, c.y)
    else:
        row, col = grid.cell_of_lonlat(*SHANGHAI_TOWER_LONLAT)
    row, col = int(row), int(col)
    if row < 0 or "building_height" not in ds:
        return None
    lon, lat = grid.cell_centres_lonlat()
    code = beidou_encode(float(lon[row, col]), float(lat[row, col]), grid.beidou_level)
    return (f"Shanghai Tower: cell (row {row}, col {col}), building_height "
            f"{float(ds['building_height'][row, col]):.0f} m, Beidou {code}")


def describe_grid_file(path: Path) -> str:
    """Human-readable summary of a twin file: extent, shape, CRS, each layer's statistics."""
    ds, buildings = load_twin(path)
    grid = grid_of(ds)
    w, s, e, n = grid.bounds_lonlat
    xmin, ymin, xmax, ymax = grid.bounds
    lines = [
        f"{path}: district {ds.attrs.get('district', '?')}",
        f"CRS {grid.crs}, cell {grid.cell_size:g} m, shape {grid.ny} x {grid.nx} ({grid.size:,} cells)",
        f"extent x {xmin:.0f}..{xmax:.0f} m, y {ymin:.0f}..{ymax:.0f} m; lon {w:.5f}..{e:.5f}, lat {s:.5f}..{n:.5f}",
        f"Beidou grid codes at level {grid.beidou_level}",
    ]
    if buildings is not None:
        t = buildings.table
        lines.append(f"buildings: {len(t):,}, floor area {t['floor_area'].sum() / 1e6:.2f} km2, "
                     f"occupancy estimate {t['occupancy'].sum():,.0f} people")
    lines.append(f"{'layer':<20} {'units':<10} {'min':>12} {'mean':>12} {'max':>12}")
    for name, var in ds.data_vars.items():
        if var.dims != ("y", "x"):
            continue
        a = var.values.astype(float)
        lines.append(f"{name:<20} {var.attrs.get('units', ''):<10} {np.nanmin(a):>12.4g} "
                     f"{np.nanmean(a):>12.4g} {np.nanmax(a):>12.4g}")
    tower = _tower_line(ds, buildings)
    if tower:
        lines.append(tower)
    if "credit" in ds.attrs:
        lines.append(f"data: {ds.attrs['credit']}")
    return "\n".join(lines)
