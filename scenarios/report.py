"""Writing a scenario run's outputs into a folder.

- ``scenario.nc``: the recorded layers on (time, y, x), zlib-compressed NetCDF (CF attrs, the grid);
- ``alerts.csv`` and ``alerts.geojson``: the alert timeline (every raise, update and cancel, CAP
  ``status`` Exercise, areas as polygons in lon/lat);
- ``peak_depth.png``, ``peak_density.png``, ``peak_level.png``: peak maps over the district's
  buildings, roads and water (matplotlib, in the grid's projection);
- ``summary.json``: the headline numbers (`scenarios.metrics.headline`), which `compare` reads;
- ``report.html``: the headline numbers, the maps and the timeline on one page.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np
import xarray as xr

from scenarios.metrics import COLOURS, headline
from twin.alerting.cap import info_block

LEVEL_RGB = ("#00000000", "#1e64dc", "#ffd700", "#ff8000", "#dc1818")


def write_outputs(result, static: xr.Dataset, out: Path, name: str, timeline: list[tuple[float, str]],
                  **extra: object) -> dict:
    """Write every output of ``result`` into ``out``; returns the headline numbers (with ``extra`` fields,
    e.g. the grid file, also written to ``summary.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    encoding = {v: {"zlib": True, "complevel": 4} for v in result.frames.data_vars if v != "crs"}
    result.frames.to_netcdf(out / "scenario.nc", encoding=encoding)
    rows = timeline_rows(result)
    write_csv(rows, out / "alerts.csv")
    (out / "alerts.geojson").write_text(json.dumps(timeline_geojson(result, rows), separators=(",", ":")))
    summary = {**headline(result, static), "name": name, **extra}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    maps = peak_maps(result.frames, static, out)
    (out / "report.html").write_text(report_html(name, summary, rows, maps, timeline), encoding="utf-8")
    return summary


def timeline_rows(result) -> list[dict[str, object]]:
    """One row per alert event: when, what, how bad, where, and its headlines in Chinese and English (the CAP
    message's ``zh-CN`` and ``en-US`` info blocks)."""
    rows = []
    for t, e in result.events:
        info = info_block(e.message, "en-US")
        params = {p["valueName"]: p["value"] for p in info.get("parameter", [])}
        rows.append({"offset_min": round(t / 60.0, 2), "sent": e.message["sent"], "kind": e.kind,
                     "hazard": e.alert.hazard, "level": params.get("warningLevel", ""),
                     "severity": info.get("severity", ""), "identifier": e.message["identifier"],
                     "status": e.message.get("status", ""), "area_m2": params.get("areaM2", ""),
                     "evidence": next((v for k, v in params.items() if k.startswith(("peak", "min"))), ""),
                     "area": info["area"][0]["areaDesc"] if info.get("area") else "",
                     "headline_zh": info_block(e.message, "zh-CN").get("headline", ""),
                     "headline_en": info.get("headline", "")})
    return rows


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    """The alert timeline as CSV (a header even when there is no alert)."""
    fields = ["offset_min", "sent", "kind", "hazard", "level", "severity", "identifier", "status", "area_m2",
              "evidence", "area", "headline_zh", "headline_en"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _ring(text: str) -> list[list[float]]:
    """A CAP polygon (``lat,lon lat,lon ...``) as a GeoJSON ring (``[lon, lat]``)."""
    return [[float(b), float(a)] for a, b in (p.split(",") for p in text.split())]


def timeline_geojson(result, rows: list[dict[str, object]]) -> dict:
    """The alert timeline (``rows`` from `timeline_rows`) as a GeoJSON FeatureCollection, a MultiPolygon
    per event."""
    features = []
    for row, (_, e) in zip(rows, result.events, strict=True):
        polygons = [[_ring(p)] for a in info_block(e.message).get("area", []) for p in a.get("polygon", [])]
        features.append({"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": polygons},
                         "properties": row})
    return {"type": "FeatureCollection", "features": features}


def peak_maps(frames: xr.Dataset, static: xr.Dataset, out: Path) -> list[str]:
    """PNG maps of the peak depth, density and level; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colors
    from matplotlib import pyplot as plt

    names = []
    peaks = {"peak_depth.png": ("water_depth", "peak water depth [m]", "Blues", 0.0, 0.5),
             "peak_density.png": ("crowd_density", "peak crowd density [person/m²]", "magma_r", 0.0, 6.0)}
    for fname, (layer, title, cmap, vmin, vmax) in peaks.items():
        values = frames[layer].max("time").values.astype(float) if frames.sizes["time"] else None
        fig, ax = _base_map(static, plt)
        if values is not None:
            shown = np.ma.masked_where(~(values > vmin + 1e-3), values)
            im = ax.imshow(shown, extent=_extent(static), origin=_origin(static), cmap=cmap, vmin=vmin, vmax=vmax)
            fig.colorbar(im, ax=ax, shrink=0.7, label=title)
        ax.set_title(title)
        fig.savefig(out / fname, dpi=110, bbox_inches="tight")
        plt.close(fig)
        names.append(fname)
    fig, ax = _base_map(static, plt)
    if frames.sizes["time"]:
        level = frames["level"].max("time").values
        cmap = colors.ListedColormap(LEVEL_RGB)
        ax.imshow(np.ma.masked_where(level <= 0, level), extent=_extent(static), origin=_origin(static), cmap=cmap,
                  vmin=-0.5, vmax=4.5, interpolation="nearest")
    ax.set_title("highest warning level (blue, yellow, orange, red)")
    fig.savefig(out / "peak_level.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [*names, "peak_level.png"]


def _extent(static: xr.Dataset) -> tuple[float, float, float, float]:
    x, y = static["x"].values, static["y"].values
    h = abs(float(x[1] - x[0])) / 2 if x.size > 1 else 0.5
    return float(x.min() - h), float(x.max() + h), float(y.min() - h), float(y.max() + h)


def _origin(static: xr.Dataset) -> str:
    y = static["y"].values
    return "upper" if y.size > 1 and y[0] > y[-1] else "lower"


def _base_map(static: xr.Dataset, plt):
    """A figure with water, roads and buildings drawn from the twin's own layers."""
    fig, ax = plt.subplots(figsize=(9, 6.5))
    ext, origin = _extent(static), _origin(static)
    base = np.ones((*static["elevation"].shape, 3)) * 0.96
    layers = (("water_mask", (0.70, 0.82, 0.93)), ("road_fraction", (0.80, 0.80, 0.80)),
              ("building_fraction", (0.55, 0.55, 0.58)))
    for name, rgb in layers:
        if name in static:
            v = np.nan_to_num(static[name].values.astype(float))
            base[v > 0.3] = rgb
    ax.imshow(base, extent=ext, origin=origin, interpolation="nearest")
    ax.set_xlabel("easting [m]")
    ax.set_ylabel("northing [m]")
    ax.text(0.01, 0.01, static.attrs.get("credit", "© OpenStreetMap contributors, ODbL 1.0"),
            transform=ax.transAxes, fontsize=7)
    return fig, ax


def report_html(name: str, summary: dict, rows: list[dict], maps: list[str], timeline: list[tuple[float, str]]) -> str:
    """A one-page HTML report (no scripts, no external resources)."""
    e = html.escape
    pd_, pu, pc = summary["peak_depth_m"], summary["peak_underpass_depth_m"], summary["peak_density"]
    head = [("simulated", f"{summary['simulated_min']:.0f} min in {summary['wall_s']:.0f} s"),
            ("peak water depth", f"{pd_['value']:.2f} m at {pd_.get('lat', '')} N {pd_.get('lon', '')} E, "
                                 f"minute {pd_.get('time_min', '')}"),
            ("peak depth at underpasses", f"{pu['value']:.2f} m"),
            ("peak crowd density", f"{pc['value']:.2f} person/m² at {pc.get('lat', '')} N {pc.get('lon', '')} E, "
                                   f"minute {pc.get('time_min', '')}"),
            ("most people in red cells", f"{summary['most_people_at_red']:.0f}")]
    for hazard, a in summary["alerts"].items():
        head.append((f"{hazard} alerts", f"{a['raised']} raised, first at minute {a['first_min']}"))
    for hazard, mins in summary["minutes_at_levels"].items():
        head.append((f"minutes at each {hazard} level", ", ".join(f"{c} {mins.get(c, 0):g}" for c in COLOURS[1:])))
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in head)
    story = "".join(f"<li>minute {t / 60:.0f}: {e(text)}</li>" for t, text in timeline)
    events = "".join("<tr>" + "".join(f"<td>{e(str(r[k]))}</td>" for k in ("offset_min", "kind", "hazard", "level",
                                                                              "evidence", "headline_zh", "headline_en",
                                                                              "area")) + "</tr>"
                     for r in rows)
    images = "".join(f'<figure><img src="{e(m)}" alt="{e(m)}"><figcaption>{e(m)}</figcaption></figure>'
                     for m in maps)
    return f"""<!doctype html><html lang="en"><meta charset="utf-8"><title>{e(name)}: scenario report</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}th{{text-align:left;padding-right:1em}}
td,th{{border-bottom:1px solid #ddd;padding:2px 6px}}img{{max-width:520px}}figure{{display:inline-block}}</style>
<h1>{e(name)}</h1><p>CAP status Exercise: these alerts are what the live twin would have raised.</p>
<h2>Headline numbers</h2><table>{table}</table><h2>What happens</h2><ul>{story}</ul>
<h2>Peak maps</h2>{images}<h2>Alert timeline</h2>
<table><tr><th>minute</th><th>event</th><th>hazard</th><th>level</th><th>evidence</th><th>标题</th><th>headline</th>
<th>area</th></tr>{events}</table>
<p>Water balance error {summary['balance'].get('water', 0):.1e}, people {summary['balance'].get('people', 0):.1e}
(relative). Map data © OpenStreetMap contributors, ODbL 1.0.</p></html>"""
