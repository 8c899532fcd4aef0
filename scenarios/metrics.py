"""Headline numbers of a scenario run (what a planner reads first; `compare` differences them).

- peak water depth [m] and where (lon/lat, row/col), and over the underpasses;
- peak crowd density [person m-2] and where;
- people in cells at each crowd level over time, and the most at red;
- minutes at each level, per hazard: recorded time during which the hazard's highest level anywhere
  was that level;
- alerts raised per hazard and the first alert's time [min from the start];
- mass-balance errors of water and people.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from models.hazards import LEVEL_HAZARDS
from twin.district import geo
from twin.district.dataset import grid_of

COLOURS = ("none", "blue", "yellow", "orange", "red")
HAZARDS = LEVEL_HAZARDS


def _where(static: xr.Dataset, flat: int) -> dict[str, float]:
    g = grid_of(static)
    row, col = divmod(int(flat), g.nx)
    lon, lat = geo.to_lonlat(float(g.x[col]), float(g.y[row]), g.crs)
    return {"row": row, "col": col, "lon": round(float(lon), 6), "lat": round(float(lat), 6)}


def peak(frames: xr.Dataset, static: xr.Dataset, name: str, mask: np.ndarray | None = None) -> dict[str, object]:
    """Peak of a recorded layer over time and space (optionally within ``mask``), with where and when."""
    values = frames[name].values.astype(float)
    if mask is not None:
        values = np.where(mask[None], values, np.nan)
    if values.size == 0 or not np.isfinite(values).any():
        return {"value": 0.0}
    k = int(np.nanargmax(values))
    t, flat = divmod(k, values.shape[1] * values.shape[2])
    return {"value": round(float(values.flat[k]), 4), "time_min": round(float(frames["time"][t]) / 60.0, 2),
            **_where(static, flat)}


def minutes_at_levels(frames: xr.Dataset, hazard: str) -> dict[str, float]:
    """Minutes during which the hazard's highest level anywhere was each colour."""
    times = frames["time"].values
    if times.size == 0:
        return {}
    widths = np.diff(np.concatenate([[0.0], times])) / 60.0
    top = frames[f"level_{hazard}"].values.reshape(times.size, -1).max(axis=1)
    return {COLOURS[k]: round(float(widths[top == k].sum()), 2) for k in range(5)}


def people_at_levels(frames: xr.Dataset) -> dict[str, list[float]]:
    """People in cells at each crowd level, at each recorded time."""
    count = np.nan_to_num(frames["crowd_count"].values.astype(float))
    level = frames["level_crowd"].values
    return {COLOURS[k]: [round(float(v), 1) for v in (count * (level == k)).sum(axis=(1, 2))] for k in range(5)}


def alert_counts(events: list) -> dict[str, dict[str, object]]:
    """Alerts raised per hazard and the first one's time [min from the start]."""
    out: dict[str, dict[str, object]] = {}
    for t, e in events:
        if e.kind != "raised":
            continue
        entry = out.setdefault(e.alert.hazard, {"raised": 0, "first_min": round(t / 60.0, 2)})
        entry["raised"] = int(entry["raised"]) + 1
    return out


def headline(result, static: xr.Dataset) -> dict[str, object]:
    """Every headline number of a run (JSON-ready)."""
    f = result.frames
    under = static["underpass"].values > 0 if "underpass" in static else None
    people = people_at_levels(f)
    return {
        "simulated_min": round(result.simulated_s / 60.0, 2), "wall_s": round(result.wall_s, 2),
        "peak_depth_m": peak(f, static, "water_depth"),
        "peak_underpass_depth_m": peak(f, static, "water_depth", under) if under is not None else {"value": 0.0},
        "peak_density": peak(f, static, "crowd_density"),
        "most_people_at_red": max(people["red"], default=0.0),
        "people_at_levels": people, "times_min": [round(float(t) / 60.0, 2) for t in f["time"].values],
        "minutes_at_levels": {h: minutes_at_levels(f, h) for h in HAZARDS},
        "alerts": alert_counts(result.events), "balance": result.balance,
    }
