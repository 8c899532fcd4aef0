"""``twin scenario ensemble``: many variants of a scenario on Dask distributed, combined into exceedance maps.

Variants are the cartesian product of ``--vary FIELD=V1,V2,...`` over the scenario file's fields
(dotted paths, e.g. ``forcing.rain.design_storm.return_period=2,5,10`` or ``seed=0,1,2``). Each member
runs in a Dask worker (a local cluster of processes by default, or the scheduler at an address) and
sends back its peak maps only; the exceedance maps are the share of members whose peak passes each
threshold: water depth 0.15 / 0.27 / 0.50 m and crowd density 2 / 4 / 5 person m-2 (the yellow,
orange and red raise thresholds of `models.config`), and any red level. Per named place
(`scenarios.place_metrics`), the probability is the share of members whose peak inside the place passes each
threshold (`place_probabilities`).
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr

DEPTHS_M = (0.15, 0.27, 0.50)
DENSITIES = (2.0, 4.0, 5.0)


def parse_vary(items: list[str]) -> dict[str, list[object]]:
    """``FIELD=V1,V2`` strings as {field: [values]} (numbers where they parse); ``ValueError`` when malformed."""
    out: dict[str, list[object]] = {}
    for item in items:
        field_, sep, values = item.partition("=")
        if not sep or not field_.strip() or not values.strip():
            raise ValueError(f"--vary {item!r} is not FIELD=V1,V2,...")
        out[field_.strip()] = [_number(v.strip()) for v in values.split(",") if v.strip()]
    return out


def _number(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def members(base: dict, vary: dict[str, list[object]]) -> list[tuple[dict[str, object], dict]]:
    """(the member's values, its scenario document) for every combination."""
    keys = list(vary)
    out = []
    for combo in itertools.product(*(vary[k] for k in keys)):
        doc = copy.deepcopy(base)
        for key, value in zip(keys, combo, strict=True):
            _set(doc, key, value)
        out.append((dict(zip(keys, combo, strict=True)), doc))
    return out


def _set(doc: dict, dotted: str, value: object) -> None:
    node = doc
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"--vary {dotted}: {p} is not a section of the scenario file")
    node[parts[-1]] = value


def run_member(doc: dict, source: str) -> dict[str, object]:
    """Run one member (in a worker): its peak maps and counts."""
    from scenarios.session import run_document

    result, _ = run_document(doc, source)
    f = result.frames
    return {"peak_depth": f["water_depth"].max("time").values.astype(np.float32),
            "peak_density": f["crowd_density"].max("time").values.astype(np.float32),
            "peak_level": f["level"].max("time").values.astype(np.int8),
            "alerts": sum(1 for _, e in result.events if e.kind == "raised"), "wall_s": result.wall_s}


def exceedance(outputs: list[dict[str, object]], static: xr.Dataset) -> xr.Dataset:
    """Share of members [1] whose peak passes each threshold, per cell."""
    depth = np.stack([o["peak_depth"] for o in outputs])
    density = np.stack([o["peak_density"] for o in outputs])
    level = np.stack([o["peak_level"] for o in outputs])
    data = {f"p_depth_over_{d:g}m": (("y", "x"), (depth > d).mean(axis=0), {"units": "1"}) for d in DEPTHS_M}
    data.update({f"p_density_over_{r:g}": (("y", "x"), (density > r).mean(axis=0), {"units": "1"})
                 for r in DENSITIES})
    data["p_red"] = (("y", "x"), (level >= 4).mean(axis=0), {"units": "1"})
    return xr.Dataset(data, coords={"y": static["y"], "x": static["x"]}, attrs={"members": len(outputs)})


def place_probabilities(outputs: list[dict[str, object]], places: list) -> list[dict[str, object]]:
    """Per named place (`scenarios.place_metrics.ScenarioPlace`), the share of members [1] whose peak inside it
    passes each threshold of `exceedance`, and the members' median and largest peaks; places most at risk first."""
    depth = np.stack([o["peak_depth"] for o in outputs]).reshape(len(outputs), -1)
    density = np.stack([o["peak_density"] for o in outputs]).reshape(len(outputs), -1)
    level = np.stack([o["peak_level"] for o in outputs]).reshape(len(outputs), -1)
    rows = []
    for p in places:
        cells = np.flatnonzero(p.mask.ravel())
        d = np.nan_to_num(depth[:, cells]).max(axis=1)
        r = np.nan_to_num(density[:, cells]).max(axis=1)
        row = {"key": p.key, "kind": p.kind, "name": p.name, "name_zh": p.name_zh, "lon": p.lon, "lat": p.lat,
               "p_red": round(float((level[:, cells].max(axis=1) >= 4).mean()), 3),
               "median_peak_depth_m": round(float(np.median(d)), 3), "max_peak_depth_m": round(float(d.max()), 3),
               "median_peak_density": round(float(np.median(r)), 2), "max_peak_density": round(float(r.max()), 2)}
        row.update({f"p_depth_over_{x:g}m": round(float((d > x).mean()), 3) for x in DEPTHS_M})
        row.update({f"p_density_over_{x:g}": round(float((r > x).mean()), 3) for x in DENSITIES})
        rows.append(row)
    rows.sort(key=lambda w: (-w["p_red"], -w[f"p_depth_over_{DEPTHS_M[0]:g}m"], -w[f"p_density_over_{DENSITIES[0]:g}"],
                             w["key"]))
    return rows


def run_ensemble(base: dict, source: str, vary: dict[str, list[object]], static: xr.Dataset, out: Path, *,
                 scheduler: str | None = None, workers: int = 2, places: list | None = None) -> dict[str, object]:
    """Run every member on Dask and write ``ensemble.nc`` and ``ensemble.json`` (with the probability per named
    place of ``places``, also ``ensemble_places.csv``) to ``out``."""
    from dask.distributed import Client, LocalCluster

    todo = members(base, vary)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures = client.map(run_member, [doc for _, doc in todo], [source] * len(todo), pure=False)
            outputs = client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()
    wall = time.monotonic() - t0
    ds = exceedance(outputs, static)
    ds.to_netcdf(out / "ensemble.nc", encoding={v: {"zlib": True} for v in ds.data_vars})
    summary = {"members": [{"values": values, "alerts": o["alerts"], "wall_s": round(float(o["wall_s"]), 2),
                            "peak_depth_m": round(float(o["peak_depth"].max()), 4),
                            "peak_density": round(float(o["peak_density"].max()), 4)}
                           for (values, _), o in zip(todo, outputs, strict=True)],
               "wall_s": round(wall, 2), "workers": workers if cluster is not None else scheduler,
               "places": place_probabilities(outputs, places or [])}
    (out / "ensemble.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    from scenarios.report.outputs import write_places_csv

    write_places_csv(summary["places"], out / "ensemble_places.csv")
    write_page(ds, static, summary, out, str(base.get("name") or Path(source).stem))
    return summary


def write_page(ds: xr.Dataset, static: xr.Dataset, summary: dict, out: Path, name: str) -> None:
    """``ensemble.html`` with the exceedance maps (`scenarios.report.comparison`)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from scenarios.report.comparison import ensemble_html, exceedance_maps
    from scenarios.report.maps import fonts, quiet_fonts

    with plt.rc_context({"font.family": fonts()}), quiet_fonts():
        maps = exceedance_maps(ds, static, summary["places"], out, plt)
    (out / "ensemble.html").write_text(ensemble_html(summary, maps, name), encoding="utf-8")
