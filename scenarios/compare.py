"""``twin scenario compare A B``: differences of two runs, per metric and per area, with difference maps.

Metrics come from each run's ``summary.json``; areas are the underpasses and the named crowd areas
of the district's device registry (each counter's coverage polygon), measured on each run's
``scenario.nc``: peak depth and peak density per area, B minus A.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from models.hazards import LEVEL_HAZARDS
from scenarios.report import _base_map, _extent, _origin

METRICS = (("peak water depth [m]", ("peak_depth_m", "value")),
           ("peak depth at underpasses [m]", ("peak_underpass_depth_m", "value")),
           ("peak crowd density [person/m2]", ("peak_density", "value")),
           ("most people in red cells", ("most_people_at_red",)))


def _get(summary: dict, path: tuple[str, ...]) -> float:
    value: object = summary
    for key in path:
        value = value.get(key, 0.0) if isinstance(value, dict) else 0.0
    return float(value)  # type: ignore[arg-type]


def load_run(folder: Path) -> tuple[dict, xr.Dataset]:
    """(summary, recorded layers) of a run folder; ``FileNotFoundError`` naming what is missing."""
    for name in ("summary.json", "scenario.nc"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a scenario run folder: {name} is missing")
    return json.loads((folder / "summary.json").read_text()), xr.open_dataset(folder / "scenario.nc")


def metric_rows(a: dict, b: dict) -> list[tuple[str, float, float, float]]:
    """(metric, A, B, B - A) for the headline metrics, alerts raised and minutes at red."""
    rows = [(label, _get(a, path), _get(b, path)) for label, path in METRICS]
    for hazard in sorted(set(a.get("alerts", {})) | set(b.get("alerts", {}))):
        rows.append((f"{hazard} alerts raised", _get(a, ("alerts", hazard, "raised")),
                     _get(b, ("alerts", hazard, "raised"))))
    for hazard in LEVEL_HAZARDS:
        rows.append((f"minutes at {hazard} red", _get(a, ("minutes_at_levels", hazard, "red")),
                     _get(b, ("minutes_at_levels", hazard, "red"))))
    return [(label, va, vb, vb - va) for label, va, vb in rows]


def area_rows(fa: xr.Dataset, fb: xr.Dataset, areas: dict[str, np.ndarray]) -> list[tuple[str, str, float, float]]:
    """(area, metric, A, B) of peak depth and peak density inside each area mask."""
    out = []
    for name, mask in areas.items():
        for layer, label in (("water_depth", "peak depth [m]"), ("crowd_density", "peak density [p/m2]")):
            va, vb = (float(np.nan_to_num(f[layer].values[:, mask]).max(initial=0.0)) for f in (fa, fb))
            if va or vb:
                out.append((name, label, va, vb))
    return out


def difference_maps(fa: xr.Dataset, fb: xr.Dataset, static: xr.Dataset, out: Path) -> list[str]:
    """PNG maps of B - A for peak depth and peak density; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = []
    for layer, label, span in (("water_depth", "peak depth, B - A [m]", 0.3),
                               ("crowd_density", "peak density, B - A [person/m²]", 3.0)):
        diff = fb[layer].max("time").values.astype(float) - fa[layer].max("time").values.astype(float)
        fig, ax = _base_map(static, plt)
        shown = np.ma.masked_where(np.abs(np.nan_to_num(diff)) < 1e-3, diff)
        im = ax.imshow(shown, extent=_extent(static), origin=_origin(static), cmap="RdBu_r", vmin=-span, vmax=span)
        fig.colorbar(im, ax=ax, shrink=0.7, label=label)
        ax.set_title(label)
        name = f"diff_{layer}.png"
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        names.append(name)
    return names


def compare(a_dir: Path, b_dir: Path, static: xr.Dataset, areas: dict[str, np.ndarray], out: Path) -> str:
    """Compare two run folders; writes ``compare.json`` and the difference maps to ``out``; returns a table."""
    (sa, fa), (sb, fb) = load_run(a_dir), load_run(b_dir)
    if fa["water_depth"].shape[1:] != fb["water_depth"].shape[1:]:
        raise ValueError(f"{a_dir} and {b_dir} are on different grids")
    out.mkdir(parents=True, exist_ok=True)
    metrics, per_area = metric_rows(sa, sb), area_rows(fa, fb, areas)
    maps = difference_maps(fa, fb, static, out)
    (out / "compare.json").write_text(json.dumps({"a": str(a_dir), "b": str(b_dir), "metrics": metrics,
                                                  "areas": per_area, "maps": maps}, indent=1))
    lines = [f"A = {sa.get('name', a_dir)}   B = {sb.get('name', b_dir)}",
             f"{'metric':34s} {'A':>10s} {'B':>10s} {'B - A':>10s}"]
    lines += [f"{label:34s} {va:10.3f} {vb:10.3f} {d:+10.3f}" for label, va, vb, d in metrics]
    if per_area:
        lines.append(f"{'area':34s} {'metric':20s} {'A':>8s} {'B':>8s}")
        lines += [f"{name[:34]:34s} {label:20s} {va:8.3f} {vb:8.3f}" for name, label, va, vb in per_area]
    lines.append(f"maps: {', '.join(str(out / m) for m in maps)}")
    return "\n".join(lines)
