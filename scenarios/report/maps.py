"""Maps of a run over the district's own layers (water, roads, buildings): named places, a scale bar, colour
scales that cover the data with the alert thresholds marked. Reusable for compare and ensemble maps:

- `base_map(static, plt)`: a figure and axes with the district drawn, no easting/northing ticks;
- `add_scale_bar(ax, static)`: a scale bar of a round length (about a fifth of the map's width);
- `label_places(ax, rows, static)`: numbered markers at named places and a key of their names;
- `covering_scale(values, thresholds)`: the colour scale's top, the data's maximum rounded up;
- `value_map(...)`: a layer on a base map with all of the above.

Data coordinates are the grid's projected metres (`extent`, `origin`), so layers are drawn with ``imshow``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from scenarios.metrics import COLOURS
from twin.district import geo
from twin.district.dataset import grid_of

LEVEL_RGB = ("#00000000", "#1e64dc", "#ffd700", "#ff8000", "#dc1818")
"""Colours of the levels none, blue, yellow, orange, red."""
THRESHOLD_RGB = LEVEL_RGB[2:]
NICE_STEPS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
SCALE_LENGTHS_M = (50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000)
CREDIT = "© OpenStreetMap contributors, ODbL 1.0"
MAP_SIZE_IN = (9.0, 6.5)
CJK_FONT = "WenQuanYi Micro Hei"
SAME_POINT_M = 40.0
"""Places closer than this to a labelled one are not labelled again [design: two markers' width at 10 m cells]. [m]"""


def extent(static: xr.Dataset) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the grid's cells [m, the grid's projection]."""
    x, y = static["x"].values, static["y"].values
    h = abs(float(x[1] - x[0])) / 2 if x.size > 1 else 0.5
    return float(x.min() - h), float(x.max() + h), float(y.min() - h), float(y.max() + h)


def origin(static: xr.Dataset) -> str:
    """``imshow`` origin of the grid's rows (``upper`` when y falls with the row)."""
    y = static["y"].values
    return "upper" if y.size > 1 and y[0] > y[-1] else "lower"


def fonts() -> list[str]:
    """Font families for figures: DejaVu Sans, with a CJK font after it when one is installed (Chinese names)."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *([CJK_FONT] if CJK_FONT in names else [])]


@contextlib.contextmanager
def quiet_fonts():
    """Without matplotlib's note that the CJK font has no bold (it uses the regular one, which is fine)."""
    log = logging.getLogger("matplotlib.font_manager")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def base_map(static: xr.Dataset, plt, figsize: tuple[float, float] = MAP_SIZE_IN):
    """A figure with water, roads and buildings drawn from the twin's own layers, no axis ticks (a scale bar gives
    distances: `add_scale_bar`), the map credit in the corner."""
    fig, ax = plt.subplots(figsize=figsize)
    ext, org = extent(static), origin(static)
    base = np.ones((*static["elevation"].shape, 3)) * 0.96
    layers = (("water_mask", (0.70, 0.82, 0.93)), ("road_fraction", (0.80, 0.80, 0.80)),
              ("building_fraction", (0.55, 0.55, 0.58)))
    for name, rgb in layers:
        if name in static:
            v = np.nan_to_num(static[name].values.astype(float))
            base[v > 0.3] = rgb
    ax.imshow(base, extent=ext, origin=org, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.995, 0.005, static.attrs.get("credit", CREDIT), transform=ax.transAxes, fontsize=6.5, ha="right",
            va="bottom", color="#333", bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "linewidth": 0})
    return fig, ax


def scale_length(width_m: float) -> float:
    """A round scale bar length [m]: the largest of `SCALE_LENGTHS_M` within a fifth of the map's width."""
    fit = [s for s in SCALE_LENGTHS_M if s <= width_m / 5]
    return float(fit[-1] if fit else max(width_m / 5, 1.0))


def add_scale_bar(ax, static: xr.Dataset, loc: str = "lower left"):
    """A scale bar (`scale_length`) on ``ax``, labelled in m or km; returns the artist (gid ``scale-bar``)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    left, right, _, _ = extent(static)
    length = scale_length(right - left)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    bar = AnchoredSizeBar(ax.transData, length, label, loc, pad=0.5, borderpad=0.6, sep=3, frameon=True,
                          size_vertical=(right - left) / 250, color="black", fontproperties={"size": 8})
    bar.patch.set_alpha(0.8)
    bar.set_gid("scale-bar")
    bar.length_m = length
    ax.add_artist(bar)
    return bar


def has_scale_bar(ax) -> bool:
    """Whether ``ax`` carries a scale bar of `add_scale_bar`."""
    return any(a.get_gid() == "scale-bar" for a in ax.artists)


def covering_scale(values: np.ndarray | float, thresholds: tuple[float, ...] = ()) -> float:
    """The top of a colour scale that covers ``values``: their finite maximum rounded up to a nice number
    (`NICE_STEPS` x 10^k), at least the lowest threshold (so a dry map still shows where yellow starts)."""
    arr = np.asarray(values, float)
    top = float(np.nanmax(arr[np.isfinite(arr)])) if np.isfinite(arr).any() else 0.0
    top = max(top, min(thresholds) if thresholds else 0.0)
    if top <= 0.0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(top))
    return next(round(s * mag, 12) for s in NICE_STEPS if s * mag >= top * (1 - 1e-9))


@dataclass
class PlaceLabels:
    """The places labelled on a map: their numbers and names, in order."""

    names: list[str] = field(default_factory=list)


def label_places(ax, rows: list[dict], static: xr.Dataset, value=None, max_labels: int = 8) -> PlaceLabels:
    """Numbered markers at the places ``rows`` (dicts with name, name_zh, lon, lat; worst first) and a key of
    their names (with ``value(row)`` text, e.g. the peak depth) under the map (the key hides no data)."""
    grid = grid_of(static)
    labels = PlaceLabels()
    lines: list[str] = []
    points: list[tuple[float, float]] = []
    for row in rows:
        if len(points) >= max_labels or row.get("lon") is None or row.get("lat") is None:
            continue
        x, y = geo.to_projected(float(row["lon"]), float(row["lat"]), grid.crs)
        if any(math.hypot(x - px, y - py) < SAME_POINT_M for px, py in points):
            continue  # a second name for the same spot (a gauge and its underpass) would hide the first
        points.append((x, y))
        n = len(labels.names) + 1
        ax.plot([x], [y], "o", ms=11, mfc="white", mec="black", mew=1.2, zorder=5)
        ax.text(x, y, str(n), ha="center", va="center", fontsize=7, fontweight="bold", zorder=6)
        name = str(row.get("name") or row.get("key"))
        zh = str(row.get("name_zh") or "")
        text = name + (f" {zh}" if zh and zh != name and CJK_FONT in fonts() else "")
        labels.names.append(name)
        lines.append(f"{n}  {text}" + (f": {value(row)}" if value else ""))
    if lines:
        key = ax.text(0.0, -0.015, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize=7.5,
                      zorder=7)
        key.set_gid("place-key")
    return labels


def mark_thresholds(colorbar, thresholds: tuple[float, ...], vmax: float) -> None:
    """Yellow, orange and red lines on a colour bar at the level thresholds within the scale."""
    for value, colour, name in zip(thresholds, THRESHOLD_RGB, COLOURS[2:], strict=False):
        if value <= vmax:
            colorbar.ax.axhline(value, color=colour, linewidth=2.5)
            colorbar.ax.text(-0.15, value, name, transform=colorbar.ax.get_yaxis_transform(), fontsize=7,
                             va="center", ha="right", color="#222")


@dataclass
class MapFigure:
    """A map figure and what it shows: file name, the colour scale's top (None for levels), the data's maximum,
    the places labelled."""

    name: str
    fig: object
    ax: object
    vmax: float | None
    data_max: float
    labels: PlaceLabels


def value_map(static: xr.Dataset, values: np.ndarray, plt, *, title: str, unit: str, cmap: str,
              thresholds: tuple[float, ...], rows: list[dict], value=None, floor: float = 1e-3,
              name: str = "map.png") -> MapFigure:
    """``values`` (ny, nx) over a base map: shown where above ``floor``, a covering colour scale with the
    ``thresholds`` marked, the places ``rows`` labelled, a scale bar."""
    fig, ax = base_map(static, plt)
    vals = np.asarray(values, float)
    vmax = covering_scale(vals, thresholds)
    shown = np.ma.masked_where(~(vals > floor), vals)
    im = ax.imshow(shown, extent=extent(static), origin=origin(static), cmap=cmap, vmin=0.0, vmax=vmax,
                   interpolation="nearest")
    bar = fig.colorbar(im, ax=ax, shrink=0.8, label=unit, pad=0.02)
    mark_thresholds(bar, thresholds, vmax)
    labels = label_places(ax, rows, static, value)
    add_scale_bar(ax, static)
    ax.set_title(title)
    data_max = float(np.nanmax(vals)) if np.isfinite(vals).any() else 0.0
    return MapFigure(name, fig, ax, vmax, data_max, labels)


def level_map(static: xr.Dataset, level: np.ndarray, plt, rows: list[dict], title: str,
              name: str = "peak_level.png") -> MapFigure:
    """The highest warning level per cell (blue, yellow, orange, red) with a legend, places and a scale bar."""
    from matplotlib import colors
    from matplotlib.patches import Patch

    fig, ax = base_map(static, plt)
    lv = np.asarray(level)
    ax.imshow(np.ma.masked_where(lv <= 0, lv), extent=extent(static), origin=origin(static),
              cmap=colors.ListedColormap(LEVEL_RGB), vmin=-0.5, vmax=4.5, interpolation="nearest")
    handles = [Patch(facecolor=LEVEL_RGB[k], edgecolor="#333", label=COLOURS[k]) for k in range(1, 5)]
    ax.legend(handles=handles, loc="upper right", fontsize=7, title="highest level", title_fontsize=7)
    labels = label_places(ax, rows, static, lambda r: ", ".join(
        f"{h} {c}" for h, c in r.get("top_level", {}).items() if c not in ("none", "blue")))
    add_scale_bar(ax, static)
    ax.set_title(title)
    return MapFigure(name, fig, ax, None, float(lv.max(initial=0)), labels)


def save(figure: MapFigure, out: Path, plt, dpi: int = 110) -> str:
    """Write a map figure as PNG into ``out`` and close it; returns its file name."""
    figure.fig.savefig(out / figure.name, dpi=dpi, bbox_inches="tight")
    plt.close(figure.fig)
    return figure.name


def peak_map_figures(frames: xr.Dataset, static: xr.Dataset, rows: list[dict], plt) -> list[MapFigure]:
    """The peak water depth, peak crowd density and highest level maps of a run, the places with the largest
    values labelled on each."""
    from scenarios.report.answer import DENSITY_LEVELS, DEPTH_LEVELS_M, WET_M, key_places, named_places
    from scenarios.report.fmt import fmt_density, fmt_depth

    empty = np.zeros(static["elevation"].shape)
    has = frames.sizes.get("time", 0) > 0
    depth = frames["water_depth"].max("time").values.astype(float) if has else empty
    density = frames["crowd_density"].max("time").values.astype(float) if has else empty
    level = frames["level"].max("time").values if has else empty.astype(int)
    worst = [r for r in named_places(rows) if r.get("kind") != "grid unit"]
    return [
        value_map(static, depth, plt, title="peak water depth", unit="water depth [m]", cmap="Blues",
                  thresholds=DEPTH_LEVELS_M, rows=key_places(rows, "peak_depth_m", 8, WET_M),
                  value=lambda r: f"{fmt_depth(r['peak_depth_m'])} at {r.get('peak_depth_at')}", floor=WET_M,
                  name="peak_depth.png"),
        value_map(static, density, plt, title="peak crowd density", unit="crowd density [person/m²]",
                  cmap="magma_r", thresholds=DENSITY_LEVELS, rows=key_places(rows, "peak_density", 8),
                  value=lambda r: f"{fmt_density(r['peak_density'])} at {r.get('peak_density_at')}", floor=0.05,
                  name="peak_density.png"),
        level_map(static, level, plt, worst, "highest warning level of any hazard"),
    ]
