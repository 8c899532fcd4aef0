"""Charts of a run over time (matplotlib PNG): water depth and crowd density at the key places, open alerts by
level, people exposed. Time runs on the local clock (`scenarios.place_metrics.Clock`); the alert thresholds are
drawn as yellow, orange and red lines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from scenarios.metrics import COLOURS
from scenarios.place_metrics import Clock
from scenarios.report.alerts import OpenAlerts
from scenarios.report.answer import DENSITY_LEVELS, DEPTH_LEVELS_M, WET_M, key_places
from scenarios.report.maps import LEVEL_RGB, THRESHOLD_RGB, covering_scale

CHART_SIZE_IN = (7.0, 3.4)
KEY_PLACES = 5
"""Places drawn per chart [design: more lines are not read]."""


@dataclass
class Chart:
    """A chart figure, its file name and the names of the places drawn."""

    name: str
    fig: object
    places: list[str]


def clock_axis(ax, clock: Clock) -> None:
    """Label the x axis (minutes from the start) with the local clock time."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 3, 5, 6, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: clock.at(v * 60.0)))
    ax.set_xlabel("local time" if clock.start_time is not None else "time from the start")


def _thresholds(ax, values: tuple[float, ...], top: float) -> None:
    for value, colour, name in zip(values, THRESHOLD_RGB, COLOURS[2:], strict=False):
        if value <= top:
            ax.axhline(value, color=colour, linewidth=1.2, linestyle="--", zorder=1)
            ax.text(1.002, value, name, transform=ax.get_yaxis_transform(), fontsize=7, va="center")


def distinct_series(series: xr.Dataset, layer: str, rows: list[dict]) -> list[tuple[dict, np.ndarray]]:
    """(row, values) of the places ``rows`` in ``series``, leaving out a place whose curve repeats one already
    kept (a road and the underpass on it share their deepest cell)."""
    keys = set(series["place"].values.tolist())
    out: list[tuple[dict, np.ndarray]] = []
    for row in rows:
        if row.get("key") not in keys:
            continue
        values = np.asarray(series[layer].sel(place=row["key"]).values, float)
        if not any(np.allclose(values, v, atol=5e-3) for _, v in out):
            out.append((row, values))
    return out


def place_chart(plt, series: xr.Dataset, rows: list[dict], clock: Clock, *, layer: str, field_: str, floor: float,
                thresholds: tuple[float, ...], unit: str, title: str, name: str) -> Chart | None:
    """``layer`` over time at the places with the largest ``field_`` (None when no place passes ``floor``)."""
    picked = distinct_series(series, layer, key_places(rows, field_, 3 * KEY_PLACES, floor))[:KEY_PLACES]
    if not picked:
        return None
    minutes = series["time"].values.astype(float) / 60.0
    fig, ax = plt.subplots(figsize=CHART_SIZE_IN)
    for row, values in picked:
        ax.plot(minutes, values, linewidth=1.6, label=str(row.get("name")))
    top = covering_scale(np.concatenate([v for _, v in picked]), thresholds)
    _thresholds(ax, thresholds, top)
    ax.set_ylim(0, top)
    ax.set_xlim(float(minutes.min(initial=0.0)), float(minutes.max(initial=1.0)))
    clock_axis(ax, clock)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.85)
    ax.grid(alpha=0.3)
    return Chart(name, fig, [str(r.get("name")) for r, _ in picked])


def alerts_chart(plt, opened: OpenAlerts, clock: Clock, name: str = "chart_alerts.png") -> Chart | None:
    """Open alerts over time by level, one panel per hazard (stacked blue, yellow, orange, red)."""
    if not opened.counts:
        return None
    from matplotlib.ticker import MaxNLocator

    hazards = list(opened.counts)
    fig, axes = plt.subplots(len(hazards), 1, figsize=(CHART_SIZE_IN[0], 0.6 + 1.1 * len(hazards)), sharex=True,
                             squeeze=False)
    for ax, hazard in zip(axes[:, 0], hazards, strict=True):
        counts = opened.counts[hazard]
        ax.stackplot(opened.times_min, counts.T, step="post", colors=LEVEL_RGB[1:], labels=COLOURS[1:])
        ax.set_ylabel(hazard.replace("_", " "), fontsize=8, rotation=0, ha="right", va="center")
        ax.set_ylim(0, max(1, int(counts.sum(axis=1).max(initial=0))) * 1.1)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("open alerts by level", fontsize=10)
    axes[0, 0].legend(fontsize=7, loc="upper left", ncol=4, framealpha=0.85)
    clock_axis(axes[-1, 0], clock)
    fig.tight_layout()
    return Chart(name, fig, [])


def exposed_chart(plt, times_s: np.ndarray, exposed: np.ndarray, clock: Clock,
                  name: str = "chart_exposed.png") -> Chart | None:
    """People in cells where water or the crowd is orange or red, over time [person]."""
    if exposed.size == 0:
        return None
    from matplotlib.ticker import FuncFormatter

    minutes = np.asarray(times_s, float) / 60.0
    fig, ax = plt.subplots(figsize=CHART_SIZE_IN)
    ax.fill_between(minutes, exposed, step=None, color=LEVEL_RGB[3], alpha=0.5)
    ax.plot(minutes, exposed, color=LEVEL_RGB[4], linewidth=1.5)
    ax.set_ylim(0, covering_scale(exposed) if exposed.max() > 0 else 1)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlim(float(minutes.min()), float(minutes.max()))
    clock_axis(ax, clock)
    ax.set_ylabel("people")
    ax.set_title("people where water or the crowd is orange or red", fontsize=10)
    ax.grid(alpha=0.3)
    return Chart(name, fig, [])


def river_chart(plt, wall: xr.Dataset | None, clock: Clock, name: str = "chart_river.png") -> Chart | None:
    """The river level [m, Wusong] over time against each flood-wall section's crest (dashed, labelled) and, below,
    the discharge over the sections that water comes over [m3 s-1] (None without a river)."""
    if wall is None or not wall.sizes.get("time", 0):
        return None
    minutes = wall["time"].values.astype(float) / 60.0
    q = np.asarray(wall["discharge"].values, float)
    over = [i for i in range(q.shape[0]) if q[i].max(initial=0.0) > 1e-4]
    rows = 2 if over else 1
    fig, axes = plt.subplots(rows, 1, figsize=(CHART_SIZE_IN[0], CHART_SIZE_IN[1] * (1.5 if over else 1.0)),
                             sharex=True, squeeze=False)
    ax = axes[0, 0]
    level = wall["river_level"].values.astype(float)
    ax.plot(minutes, level, color="#1f4e9c", linewidth=1.8, label="river level")
    named: dict[float, list[str]] = {}
    for c, n in zip(wall["crest_m"].values, wall["name"].values, strict=True):
        named.setdefault(round(float(c), 2), []).append(str(n))
    crests = sorted(named.items())
    for k, (crest, sections) in enumerate(crests):
        what = sections[0][:30] if len(sections) == 1 else f"{len(sections)} sections"
        ax.axhline(crest, color="#7a4a1f", linewidth=1.0, linestyle="--", alpha=0.5 + 0.5 * (k == 0))
        ax.text(1.002, crest, f"crest {crest:.2f} m: {what}", transform=ax.get_yaxis_transform(), fontsize=6.5,
                va="center")
    lo = min(float(np.nanmin(level)), crests[0][0] if crests else 0.0) - 0.3
    hi = max(float(np.nanmax(level)), crests[-1][0] if crests else 0.0) + 0.3
    ax.set_ylim(lo, hi)
    ax.set_ylabel("level [m, Wusong]")
    ax.set_title("the Huangpu against the flood wall's crests", fontsize=10)
    ax.grid(alpha=0.3)
    if over:
        axq = axes[1, 0]
        for i in over:
            axq.plot(minutes, q[i], linewidth=1.5, label=str(wall["name"].values[i]))
        axq.set_ylabel("over the wall [m³/s]")
        axq.set_ylim(0, covering_scale(q[over].ravel()))
        axq.legend(fontsize=7, loc="upper left", framealpha=0.85)
        axq.grid(alpha=0.3)
    ax.set_xlim(float(minutes.min(initial=0.0)), float(minutes.max(initial=1.0)))
    clock_axis(axes[-1, 0], clock)
    fig.tight_layout()
    return Chart(name, fig, [str(wall["name"].values[i]) for i in over])


def charts(plt, series: xr.Dataset, rows: list[dict], clock: Clock, opened: OpenAlerts, times_s: np.ndarray,
           exposed: np.ndarray, wall: xr.Dataset | None = None) -> list[Chart]:
    """Every chart of a run that has something to show (the river against the wall's crests with a river)."""
    made = [
        river_chart(plt, wall, clock),
        place_chart(plt, series, rows, clock, layer="depth", field_="peak_depth_m", floor=WET_M,
                    thresholds=DEPTH_LEVELS_M, unit="water depth [m]", title="deepest water at the key places",
                    name="chart_depth.png"),
        place_chart(plt, series, rows, clock, layer="density", field_="peak_density", floor=0.0,
                    thresholds=DENSITY_LEVELS, unit="crowd density [person/m²]",
                    title="densest crowd at the key places", name="chart_density.png"),
        alerts_chart(plt, opened, clock),
        exposed_chart(plt, times_s, exposed, clock),
    ]
    return [c for c in made if c is not None]
