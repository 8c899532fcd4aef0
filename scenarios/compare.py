"""``twin scenario compare A B``: what B changed against A, per place and per intervention, ranked by effect.

Each run folder holds its headline numbers (``summary.json``), its recorded layers (``scenario.nc``) and its named
places with their cells (``places.nc``, `scenarios.place_metrics`). The places of both runs are measured on both
runs' layers (a place only B names, such as the area of B's extra pumps, is measured on A's layers too), and for
each the change B - A of every metric of `METRICS`.

A change counts when it is at least the metric's *measurable* step (1 cm of water, 0.1 person/m², a minute, ten
people, 1 km/h); below that it is noise of the numerics, not an effect. Places are ranked by their *effect*: the
largest measurable change in units of the metric's *notable* step (5 cm, 0.5 person/m², 10 minutes, 500 people,
5 km/h), so that 10 cm of water and 1 person/m² weigh the same. A place whose largest change is the same as that of
a higher-ranked place it overlaps (within `SAME_EFFECT`) repeats that effect and is marked ``same_as``.

Outputs: ``compare.json``, ``compare.html`` (`scenarios.report.comparison`: the answer, the three largest effects and
the interventions first) and the difference maps.

Interventions: every place of B's (and A's) ``interventions`` is reported on its own, with its changes or, plainly,
"no measurable change"; a flood-wall section whose crest B changes (``interventions.flood_wall``) is one of them.
Runs with a river keep their flood wall's log (``wall.nc``, `scenarios.runner.WallLog`), so the water over each
section is compared too. When no place changes measurably, compare says that B changed nothing measurable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from models.hazards import LEVEL_HAZARDS
from scenarios.place_metrics import ScenarioPlace, label_point, place_metrics
from scenarios.report.comparison import compare_html
from scenarios.report.fmt import fmt_signed, fmt_value
from twin.district.dataset import grid_of


@dataclass(frozen=True)
class Metric:
    """A compared metric: its path in a place row, label, unit, measurable and notable steps, and whether a rise
    is worse (+1), better (-1) or neither (0: shown, not ranked)."""

    path: tuple[str, ...]
    label: str
    unit: str
    measurable: float
    notable: float
    worse_when: int = 1


METRICS = (
    Metric(("peak_depth_m",), "peak water depth", "m", 0.01, 0.05),
    Metric(("minutes_at_or_above", "flood", "yellow"), "minutes of flood yellow or worse", "min", 1.0, 10.0),
    Metric(("minutes_at_or_above", "flood", "red"), "minutes of flood red", "min", 1.0, 10.0),
    Metric(("peak_density",), "peak crowd density", "person/m²", 0.1, 0.5),
    Metric(("minutes_at_or_above", "crowd", "orange"), "minutes of crowd orange or worse", "min", 1.0, 10.0),
    Metric(("minutes_at_or_above", "crowd", "red"), "minutes of crowd red", "min", 1.0, 10.0),
    Metric(("min_traffic_speed_kmh",), "lowest traffic speed", "km/h", 1.0, 5.0, worse_when=-1),
    Metric(("minutes_at_or_above", "traffic", "orange"), "minutes of traffic orange or worse", "min", 1.0, 10.0),
    Metric(("people_exposed",), "people at orange or red", "people", 10.0, 500.0),
    Metric(("people_peak",), "most people at once", "people", 10.0, 1000.0, worse_when=0),
    Metric(("overtopping_volume_m3",), "water over the flood wall", "m3", 1.0, 1000.0),
    Metric(("overtopping_peak_m3s",), "peak discharge over the flood wall", "m3/s", 0.01, 0.5),
    Metric(("overtopping_minutes",), "minutes water comes over the flood wall", "min", 1.0, 10.0),
)
"""The per-place metrics compared (rows of `scenarios.place_metrics.place_row`)."""
SAME_EFFECT = 0.1
"""Overlapping places whose effects differ by less than this share show the same effect. [1]"""
HEADLINE = (("peak water depth [m]", ("peak_depth_m", "value")),
            ("peak depth at underpasses [m]", ("peak_underpass_depth_m", "value")),
            ("peak crowd density [person/m2]", ("peak_density", "value")),
            ("most people in red cells", ("most_people_at_red",)))


def _get(row: dict, path: tuple[str, ...]) -> float | None:
    value: object = row
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return None if value is None else float(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------- reading runs
def load_run(folder: Path) -> tuple[dict, xr.Dataset]:
    """(summary, recorded layers) of a run folder; ``FileNotFoundError`` naming what is missing."""
    for name in ("summary.json", "scenario.nc", "places.nc"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a scenario run folder: {name} is missing (run it again with "
                                    "this version of twin scenario run)")
    return json.loads((folder / "summary.json").read_text(encoding="utf-8")), xr.open_dataset(folder / "scenario.nc")


def read_places(folder: Path, static: xr.Dataset) -> list[ScenarioPlace]:
    """The named places of a run folder (``places.nc``) with their cells, on the grid of ``static``."""
    grid = grid_of(static)
    with xr.open_dataset(folder / "places.nc") as ds:
        cells = ds["cells"].values.astype(bool)
        if cells.shape[1:] != grid.shape:
            raise ValueError(f"{folder} ran on another grid than {grid.shape[0]} x {grid.shape[1]} cells")
        return [ScenarioPlace(str(key), str(kind), str(name), str(zh), *label_point(grid, cells[i]), cells[i])
                for i, (key, kind, name, zh) in enumerate(zip(ds["place"].values, ds["kind"].values,
                                                               ds["name"].values, ds["name_zh"].values, strict=True))
                if cells[i].any()]


def read_wall(folder: Path) -> xr.Dataset | None:
    """The flood wall's log of a run with a river (``wall.nc``), loaded, or None."""
    path = folder / "wall.nc"
    if not path.is_file():
        return None
    with xr.open_dataset(path) as ds:
        return ds.load()


def union_places(a: list[ScenarioPlace], b: list[ScenarioPlace]) -> list[ScenarioPlace]:
    """B's places, then those only A has (by key)."""
    keys = {p.key for p in b}
    return list(b) + [p for p in a if p.key not in keys]


# ---------------------------------------------------------------- per place
def changes(row_a: dict, row_b: dict) -> list[dict[str, object]]:
    """The measurable changes B - A of one place, each with its metric, values and whether it is worse."""
    out = []
    for m in METRICS:
        va, vb = _get(row_a, m.path), _get(row_b, m.path)
        if va is None or vb is None or abs(vb - va) < m.measurable - 1e-12:
            continue
        diff = vb - va
        out.append({"metric": m.label, "unit": m.unit, "a": va, "b": vb, "diff": round(diff, 4),
                    "effect": round(abs(diff) / m.notable, 3) if m.worse_when else 0.0,
                    "worse": None if m.worse_when == 0 else diff * m.worse_when > 0})
    return out


def verdict(found: list[dict[str, object]]) -> str:
    """``worse``, ``better``, ``mixed`` or ``unchanged`` from a place's ranked changes."""
    signs = {c["worse"] for c in found if c["worse"] is not None}
    if not signs:
        return "unchanged"
    return "mixed" if len(signs) == 2 else ("worse" if True in signs else "better")


def place_effects(rows_a: list[dict], rows_b: list[dict], masks: dict[str, np.ndarray]) -> list[dict[str, object]]:
    """Every place with a measurable change, ranked by effect (largest first), repeats marked ``same_as``."""
    by_a = {r["key"]: r for r in rows_a}
    out = []
    for rb in rows_b:
        found = changes(by_a[rb["key"]], rb)
        if not found:
            continue
        found.sort(key=lambda c: -float(c["effect"]))
        out.append({"key": rb["key"], "kind": rb["kind"], "name": rb["name"], "name_zh": rb["name_zh"],
                    "lon": rb["lon"], "lat": rb["lat"], "effect": max(float(c["effect"]) for c in found),
                    "verdict": verdict(found), "changes": found})
    out.sort(key=lambda e: (-float(e["effect"]), e["key"]))
    _mark_repeats(out, masks)
    return out


def _mark_repeats(ranked: list[dict[str, object]], masks: dict[str, np.ndarray]) -> None:
    """Mark a place ``same_as`` the first higher-ranked place it overlaps with nearly the same effect."""
    for i, e in enumerate(ranked):
        for first in ranked[:i]:
            if "same_as" in first or not first["effect"]:
                continue
            close = abs(float(first["effect"]) - float(e["effect"])) <= SAME_EFFECT * float(first["effect"])
            if close and (masks[first["key"]] & masks[e["key"]]).any():
                e["same_as"] = first["name"]
                break


def intervention_effects(effects: list[dict[str, object]], rows_b: list[dict]) -> list[dict[str, object]]:
    """Every intervention place of the runs, with its changes or plainly none."""
    ranked = {e["key"]: e for e in effects}
    out = []
    for row in rows_b:
        key = str(row["key"])
        if not key.startswith("scenario:interventions.") and not row.get("crest_changed_by"):
            continue
        e = ranked.get(key)
        field = str(row["crest_changed_by"]) if row.get("crest_changed_by") else key.removeprefix("scenario:")
        text = f"{field} ({row['name']}): " + (_change_text(e) if e else "no measurable change there")
        out.append({"key": key, "field": field, "name": row["name"], "changed": e is not None, "text": text,
                    "changes": e["changes"] if e else []})
    return out


def _change_text(effect: dict[str, object]) -> str:
    return "; ".join(f"{c['metric']} {fmt_value(c['a'])} -> {fmt_value(c['b'])} {c['unit']} ({fmt_signed(c['diff'])})"
                     for c in effect["changes"][:3])


# ---------------------------------------------------------------- headline
def metric_rows(a: dict, b: dict) -> list[tuple[str, float, float, float]]:
    """(metric, A, B, B - A) for the headline metrics, alerts raised and minutes at red."""
    rows = [(label, _get(a, path) or 0.0, _get(b, path) or 0.0) for label, path in HEADLINE]
    for hazard in sorted(set(a.get("alerts", {})) | set(b.get("alerts", {}))):
        rows.append((f"{hazard} alerts raised", _get(a, ("alerts", hazard, "raised")) or 0.0,
                     _get(b, ("alerts", hazard, "raised")) or 0.0))
    for hazard in LEVEL_HAZARDS:
        rows.append((f"minutes at {hazard} red", _get(a, ("minutes_at_levels", hazard, "red")) or 0.0,
                     _get(b, ("minutes_at_levels", hazard, "red")) or 0.0))
    return [(label, va, vb, vb - va) for label, va, vb in rows]


def answer(a_name: str, b_name: str, effects: list[dict[str, object]], n_places: int) -> str:
    """One sentence: what B changed against A, at the three largest effects, or plainly nothing."""
    top = [e for e in effects if "same_as" not in e][:3]
    if not top:
        return f"{b_name} changed nothing measurable against {a_name} at any of {n_places} places."
    parts = [f"{e['name']}: {e['changes'][0]['metric']} {fmt_value(e['changes'][0]['a'])} -> "
             f"{fmt_value(e['changes'][0]['b'])} {e['changes'][0]['unit']} ({e['verdict']})" for e in top]
    return f"{b_name} against {a_name}, largest effects: " + "; ".join(parts) + "."


# ---------------------------------------------------------------- the comparison
def compare(a_dir: Path, b_dir: Path, static: xr.Dataset, out: Path) -> str:
    """Compare two run folders; writes ``compare.json`` and the difference maps to ``out``; returns the text."""
    (sa, fa), (sb, fb) = load_run(a_dir), load_run(b_dir)
    out.mkdir(parents=True, exist_ok=True)
    with fa, fb:
        if fa.sizes.get("y") != fb.sizes.get("y") or fa.sizes.get("x") != fb.sizes.get("x"):
            raise ValueError(f"{a_dir} and {b_dir} ran on different grids; compare runs of one grid")
        places = union_places(read_places(a_dir, static), read_places(b_dir, static))
        wa, wb = read_wall(a_dir), read_wall(b_dir)
        rows_a = place_metrics(fa, static, places, wall=wa).rows
        rows_b = place_metrics(fb, static, places, wall=wb).rows
        masks = {p.key: p.mask for p in places}
        effects = place_effects(rows_a, rows_b, masks)
        maps = difference_maps(fa, fb, static, effects, out)
    result = {"a": sa.get("name", str(a_dir)), "b": sb.get("name", str(b_dir)), "question": sb.get("question", ""),
              "answer": answer(sa.get("name", "A"), sb.get("name", "B"), effects, len(places)),
              "metrics": [{"metric": m, "a": va, "b": vb, "diff": d} for m, va, vb, d in metric_rows(sa, sb)],
              "effects": effects, "interventions": intervention_effects(effects, rows_b),
              "places": len(places), "unchanged_places": len(places) - len(effects), "maps": maps}
    (out / "compare.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "compare.html").write_text(compare_html(result, maps), encoding="utf-8")
    return compare_text(result, out)


def compare_text(result: dict, out: Path) -> str:
    """The printed comparison: the answer, headline metrics, the ranked effects and every intervention."""
    lines = [f"A = {result['a']}   B = {result['b']}", result["answer"], "",
             f"{'metric':34s} {'A':>10s} {'B':>10s} {'B - A':>10s}"]
    for m in result["metrics"]:
        lines.append(f"{m['metric']:34s} {fmt_value(m['a']):>10s} {fmt_value(m['b']):>10s} "
                     f"{fmt_signed(m['diff']) if m['diff'] else '0':>10s}")
    lines += ["", f"effects by place, largest first ({len(result['effects'])} of {result['places']} places changed "
                  "measurably):"]
    for rank, e in enumerate(result["effects"][:15], 1):
        same = f"  (same as {e['same_as']})" if "same_as" in e else ""
        lines.append(f"{rank:3d}. {e['name'][:44]:44s} {e['verdict']:9s} {_change_text(e)}{same}")
    if result["interventions"]:
        lines += ["", "interventions:"] + [f"  {i['text']}" for i in result["interventions"]]
    lines.append(f"wrote {out / 'compare.html'}, compare.json, {', '.join(result['maps'])}")
    return "\n".join(lines)


def difference_maps(fa: xr.Dataset, fb: xr.Dataset, static: xr.Dataset, effects: list[dict], out: Path) -> list[str]:
    """PNG maps of B - A for peak depth and peak density (red where B is worse, the colour scale covering the
    largest change, the places with the largest effects labelled); returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from scenarios.report.comparison import difference_map
    from scenarios.report.maps import fonts, quiet_fonts

    names = []
    layers = (("water_depth", "peak depth, B - A [m]"), ("crowd_density", "peak density, B - A [person/m²]"))
    with plt.rc_context({"font.family": fonts()}), quiet_fonts():  # Chinese names beside the English ones
        for layer, label in layers:
            diff = fb[layer].max("time").values.astype(float) - fa[layer].max("time").values.astype(float)
            fig = difference_map(static, diff, plt, effects, label)
            name = f"diff_{layer}.png"
            fig.savefig(out / name, dpi=110, bbox_inches="tight")
            plt.close(fig)
            names.append(name)
    return names
