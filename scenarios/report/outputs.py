"""Writing a scenario run's outputs into a folder.

- ``scenario.nc``: the recorded layers on (time, y, x), zlib-compressed NetCDF (CF attrs, the grid);
- ``alerts.csv`` and ``alerts.geojson``: the alert timeline (every raise, update and cancel, CAP ``status``
  Exercise, areas as polygons in lon/lat);
- ``places.csv`` and ``places.nc``: the metrics of every named place (`scenarios.place_metrics`), with the flood
  wall's sections in a run with a river;
- ``wall.nc`` (a run with a river): the flood wall and the river at every step (`scenarios.runner.WallLog`): the
  water over each section [m3] and its discharge [m3 s-1], the river level [m, Wusong], the crests;
- ``peak_depth.png``, ``peak_density.png``, ``peak_level.png``: peak maps with the key places and a scale bar
  (`scenarios.report.maps`); ``chart_*.png``: depth and density at the key places, open alerts by level, people
  exposed, over time (`scenarios.report.charts`);
- ``summary.json``: the headline numbers (`scenarios.metrics.headline`, which `compare` reads), the question,
  the warnings and the places, worst first;
- ``report.html``: the answer on the first screen, then the charts, maps and tables (`scenarios.report.page`),
  print-ready; ``report.pdf``: the same summary, charts and maps as A4 pages (`scenarios.report.pdf`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import xarray as xr

from scenarios.metrics import COLOURS, headline
from scenarios.place_metrics import Clock, PlaceMetrics, place_masks, place_metrics, scenario_places, severity
from scenarios.report import charts as charts_mod
from scenarios.report import maps as maps_mod
from scenarios.report.alerts import collapse_alerts, open_alerts
from scenarios.report.answer import answer, exposed_series
from scenarios.report.fmt import fmt_density, fmt_depth, fmt_int, fmt_people
from scenarios.report.page import ReportPage, report_html
from twin.alerting.cap import info_block
from twin.district.sources import data_dir

CAPTIONS = {"chart_depth.png": "Deepest water over time at the key places; dashed: the yellow, orange and red "
                               "thresholds.",
            "chart_density.png": "Densest crowd over time at the key places; dashed: the level thresholds.",
            "chart_alerts.png": "Open alerts by level over time, per hazard.",
            "chart_exposed.png": "People exposed: people in cells where water or the crowd is orange or red.",
            "chart_river.png": "The Huangpu's level (Wusong datum) against the crests of the flood wall's sections; "
                               "below, the discharge over each section that water comes over.",
            "peak_depth.png": "Peak water depth; numbered: the places with the deepest water.",
            "peak_density.png": "Peak crowd density; numbered: the places with the densest crowd.",
            "peak_level.png": "Highest warning level of any hazard; numbered: the worst places."}


def write_outputs(result, static: xr.Dataset, out: Path, name: str, timeline: list[tuple[float, str]],
                  spec=None, warnings: tuple[str, ...] | list[str] = (), **extra: object) -> dict:
    """Write every output of ``result`` into ``out``; returns the headline numbers (with ``extra`` fields,
    e.g. the grid file, also written to ``summary.json``). ``spec`` (the `scenarios.model.Scenario`) adds its
    question and its places to the per-place metrics; ``warnings`` are the run's (`scenarios.forcing.Forcing`)."""
    out.mkdir(parents=True, exist_ok=True)
    encoding = {v: {"zlib": True, "complevel": 4} for v in result.frames.data_vars if v != "crs"}
    result.frames.to_netcdf(out / "scenario.nc", encoding=encoding)
    rows = timeline_rows(result)
    write_csv(rows, out / "alerts.csv")
    (out / "alerts.geojson").write_text(json.dumps(timeline_geojson(result, rows), separators=(",", ":")))
    metrics = write_place_metrics(result, static, spec, out)
    summary = {**headline(result, static), "name": name, "question": getattr(spec, "question", "") or "",
               "description": getattr(spec, "description", "") or "", "warnings": list(warnings),
               "places": metrics.rows, **extra}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    clock = Clock(getattr(spec, "start_time", None), getattr(spec, "utc_offset_s", None))
    page = report_page(result, static, out, name, summary, rows, metrics.series, clock, timeline)
    (out / "report.html").write_text(report_html(page), encoding="utf-8")
    from scenarios.report.pdf import write_pdf

    write_pdf(page, out, out / "report.pdf")
    return summary


def report_page(result, static: xr.Dataset, out: Path, name: str, summary: dict, rows: list[dict],
                series: xr.Dataset, clock: Clock, timeline: list[tuple[float, str]]) -> ReportPage:
    """Draw the charts and maps into ``out`` and gather what the report page shows."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    frames = result.frames
    times_s = frames["time"].values.astype(float)
    exposed = exposed_series(frames)
    places = summary["places"]
    opened = open_alerts(rows, end_min=result.simulated_s / 60.0)
    with plt.rc_context({"font.family": maps_mod.fonts()}), maps_mod.quiet_fonts():
        made = charts_mod.charts(plt, series, places, clock, opened, times_s, exposed,
                                 wall=result.wall)
        chart_files = []
        for c in made:
            c.fig.savefig(out / c.name, dpi=100, bbox_inches="tight")
            plt.close(c.fig)
            chart_files.append(c.name)
        map_files = [maps_mod.save(m, out, plt) for m in maps_mod.peak_map_figures(frames, static, places, plt)]
    return ReportPage(
        name=name, summary=summary, answer=answer(places, series, exposed, times_s, clock),
        period=f"{clock.at(0.0)} to {clock.at(result.simulated_s)}, {result.simulated_s / 60:.0f} min simulated "
               f"in {result.wall_s:.0f} s",
        charts=[(f, CAPTIONS.get(f, f)) for f in chart_files], maps=[(f, CAPTIONS.get(f, f)) for f in map_files],
        alert_places=collapse_alerts(rows), alert_events=len(rows),
        district=district_numbers(summary, series, exposed, times_s, clock),
        timeline=[(clock.at(t), text) for t, text in timeline],
        files=["summary.json", "places.csv", "places.nc", "alerts.csv", "alerts.geojson", "scenario.nc",
               "report.pdf"] + (["wall.nc"] if result.wall is not None else []))


def place_at(series: xr.Dataset, rows: list[dict], peak: dict) -> str:
    """The name of the smallest named place (not a grid unit, if any holds it) whose cells hold a headline peak's
    cell (``row``, ``col``), else its lat/lon."""
    if "row" not in peak:
        return ""
    if "cells" in series:
        holding = set(np.asarray(series["place"].values)[series["cells"].values[:, peak["row"], peak["col"]] > 0])
        found = [r for r in rows if r["key"] in holding]
        found.sort(key=lambda r: (r.get("kind") == "grid unit", r.get("area_m2") or 0))
        if found:
            return str(found[0]["name"])
    return f"{peak.get('lat')} N {peak.get('lon')} E"


def district_numbers(summary: dict, series: xr.Dataset, exposed: np.ndarray, times_s: np.ndarray,
                     clock: Clock) -> list[tuple[str, str]]:
    """(label, value) of the whole district's headline numbers, places by name, times on the clock."""
    places = summary.get("places") or []
    pd_, pu, pc = summary["peak_depth_m"], summary["peak_underpass_depth_m"], summary["peak_density"]

    def at(p: dict) -> str:
        where = place_at(series, places, p)
        when = clock.at(p["time_min"] * 60.0) if "time_min" in p else ""
        return f" at {where}, {when}" if where else ""
    out = [("peak water depth", fmt_depth(pd_["value"]) + at(pd_)),
           ("peak depth at underpasses", fmt_depth(pu["value"]) + at(pu)),
           ("peak crowd density", fmt_density(pc["value"]) + at(pc)),
           ("most people in red crowd cells", fmt_people(summary["most_people_at_red"])),
           ("most people where water or the crowd is orange or red", fmt_people(exposed.max(initial=0.0)))]
    for hazard, a in summary["alerts"].items():
        out.append((f"{hazard.replace('_', ' ')} alerts", f"{fmt_int(a['raised'])} raised, the first at "
                                                           f"{clock.at(a['first_min'] * 60.0)}"))
    for hazard, mins in summary["minutes_at_levels"].items():
        out.append((f"minutes at each {hazard} level (worst anywhere)",
                    ", ".join(f"{c} {fmt_int(mins.get(c, 0))}" for c in COLOURS[1:])))
    bal = summary.get("balance", {})
    out.append(("mass balance error (relative)", f"water {bal.get('water', 0):.1e}, people {bal.get('people', 0):.1e}"))
    return out


def write_place_metrics(result, static: xr.Dataset, spec, out: Path) -> PlaceMetrics:
    """The metrics of every named place (`scenarios.place_metrics`): ``places.csv`` (one row per place, worst
    first) and ``places.nc`` (their series over time and their cells); returns them, rows worst first, ``series``
    as written to ``places.nc`` (with the ``cells``)."""
    folder = data_dir() / (spec.grid.district if spec is not None else static.attrs.get("district", "bund"))
    wall = result.wall
    if wall is not None:
        wall.to_netcdf(out / "wall.nc", encoding={v: {"zlib": True} for v in wall.data_vars
                                                   if wall[v].dtype.kind not in "UO"})
    places = scenario_places(static, folder, spec, wall)
    metrics = place_metrics(result.frames, static, places, getattr(spec, "start_time", None),
                            getattr(spec, "utc_offset_s", None), wall)
    metrics.rows.sort(key=severity)
    write_places_csv(metrics.rows, out / "places.csv")
    ds = metrics.series.merge(place_masks(places, static))
    ds.to_netcdf(out / "places.nc", encoding={v: {"zlib": True} for v in ds.data_vars if ds[v].dtype.kind != "U"})
    return PlaceMetrics(metrics.rows, ds)


def write_places_csv(rows: list[dict[str, object]], path: Path) -> None:
    """Place metrics as CSV: nested fields flattened (``minutes_at_or_above.crowd.red``)."""
    flat = [_flatten(r) for r in rows]
    fields = list(dict.fromkeys(k for r in flat for k in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(flat)


def _flatten(row: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = "" if value is None else value
    return out


def timeline_rows(result) -> list[dict[str, object]]:
    """One row per alert event: when, what, how bad, where, and its headlines in Chinese and English (the CAP
    message's ``zh-CN`` and ``en-US`` info blocks); ``identifier`` is the message's, ``alert`` the alert's (the
    first message's, which every update of it carries on)."""
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
                     "headline_en": info.get("headline", ""), "alert": e.alert.identifier})
    return rows


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    """The alert timeline as CSV (a header even when there is no alert)."""
    fields = ["offset_min", "sent", "kind", "hazard", "level", "severity", "identifier", "status", "area_m2",
              "evidence", "area", "headline_zh", "headline_en", "alert"]
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
