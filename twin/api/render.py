"""Layer pictures: PNG images of layers (one pixel per cell, north up) and their legends.

- Level layers (``level*``, ``rain_signal``; -1 no data, 0 none, 1-4) take China's warning
  colours: blue, yellow, orange, red (the colours of CAP ``warningLevel``). Level 0 is
  transparent. No data (-1: stale inputs, or cells no sensor covers) is transparent too, or a
  translucent grey with ``show_nodata`` (most of a district has no crowd counter, so grey by
  default would veil the whole map).
- Bitmask layers (``level_nodata``: 1 crowd, 2 flood, 4 traffic; ``level_changed``: the same and
  8 overall) take one grey per value, lighter with more bits set, 0 transparent; the legend lists
  every value with its hazards and exact RGBA, so a client can read the bits back from the picture
  (the dashboard does, to hatch the cells whose level is held).
- Continuous layers take a sequential ramp from pale yellow through green and blue to deep
  violet over ``vmin..vmax``. For live and risk layers, cells at or below ``vmin`` are
  transparent (dry ground and empty squares do not hide the base map). NaN is transparent.

Default ranges: risk layers 0..1; crowd density up to the red raise threshold and water
depth up to the red threshold of `models.config`; other layers their finite min..max.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

import models
from twin.api.geojson import LEVEL_HEX
from twin.api.view import LayerInfo
from twin.district.layers import LEVEL_NAMES

LEVEL_RGBA = {-1: (128, 128, 128, 110), 0: (0, 0, 0, 0), 1: (30, 100, 220, 200), 2: (255, 215, 0, 210),
              3: (255, 128, 0, 215), 4: (220, 24, 24, 225)}
"""Pixel colour of each warning level (RGBA)."""
BITMASKS = {"level_nodata": ("crowd", "flood", "traffic"), "level_changed": ("crowd", "flood", "traffic", "overall")}
"""Bitmask layers and the meaning of each bit, lowest first."""
BITS_ALPHA = 170


def bits_rgba(value: int) -> tuple[int, int, int, int]:
    """Pixel colour (RGBA) of a bitmask value: transparent for 0, else a grey lighter with the value."""
    if value <= 0:
        return (0, 0, 0, 0)
    grey = min(100 + 9 * int(value), 255)
    return (grey, grey, grey, BITS_ALPHA)


RAMP = ((0.0, (255, 250, 200)), (0.25, (170, 222, 160)), (0.5, (70, 180, 180)), (0.75, (40, 110, 185)),
        (1.0, (45, 25, 110)))
"""Sequential colour ramp, (position in 0..1, RGB)."""
RAMP_ALPHA = 210
FIXED_RANGES = {
    "crowd_density": (0.0, models.CrowdConfig().density_raise[-1]),
    "water_depth": (0.0, models.FloodConfig().depth_raise[-1]),
    "flow_hazard": (0.0, models.FloodConfig().hv_raise[-1]),
    "rain_rate": (0.0, 100.0),
    "rain_1h": (0.0, 100.0),
    "rain_6h": (0.0, 250.0),
    "traffic_speed": (0.0, 80.0),
}
"""Display ranges of live layers [layer units]: red thresholds where the models have them;
rain 100 mm (h-1) and 250 mm / 6 h about Shanghai's red rainstorm signal; 80 km h-1 urban speeds."""


@dataclass(frozen=True)
class Style:
    """How a layer is drawn: ``levels`` (discrete warning colours), ``bits`` (one grey per bitmask value,
    ``bits`` names the bits) or ``ramp`` over vmin..vmax."""

    mode: str
    vmin: float = 0.0
    vmax: float = 1.0
    clear_below: bool = False
    show_nodata: bool = False
    bits: tuple[str, ...] = ()


def is_level_layer(info: LayerInfo) -> bool:
    """A layer of warning levels (drawn in warning colours)."""
    return info.kind == "level"


def style_for(info: LayerInfo, vmin: float | None = None, vmax: float | None = None,
              show_nodata: bool = False) -> Style:
    """The style of a layer; ``vmin``/``vmax`` override the default range of a continuous layer;
    ``show_nodata`` greys out level cells without data."""
    if is_level_layer(info):
        return Style("levels", show_nodata=show_nodata)
    if info.name in BITMASKS:
        return Style("bits", 0.0, float(2 ** len(BITMASKS[info.name]) - 1), bits=BITMASKS[info.name])
    lo, hi = _default_range(info)
    lo = lo if vmin is None else vmin
    hi = hi if vmax is None else vmax
    if not hi > lo:
        hi = lo + 1.0
    return Style("ramp", float(lo), float(hi), clear_below=info.kind in ("live", "risk"))


def _default_range(info: LayerInfo) -> tuple[float, float]:
    if info.kind == "risk" and info.name.startswith("risk_"):
        return 0.0, 1.0
    if info.name in FIXED_RANGES:
        return FIXED_RANGES[info.name]
    values = np.asarray(info.data.values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    return float(finite.min()), float(finite.max())


def colourise(values: np.ndarray, style: Style) -> np.ndarray:
    """RGBA pixels (uint8, shape values.shape + (4,)) of a 2-D array in a style."""
    values = np.asarray(values)
    if style.mode == "levels":
        return _levels_rgba(values, style.show_nodata)
    if style.mode == "bits":
        return _bits_rgba(values, len(style.bits))
    return _ramp_rgba(values.astype(float), style)


def _levels_rgba(values: np.ndarray, show_nodata: bool) -> np.ndarray:
    table = np.zeros((6, 4), dtype=np.uint8)  # index = level + 1
    for level, rgba in LEVEL_RGBA.items():
        if level >= 0 or show_nodata:
            table[level + 1] = rgba
    v = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
    idx = np.clip(v, -1, 4).astype(np.int64) + 1
    return table[idx]


def _bits_rgba(values: np.ndarray, n_bits: int) -> np.ndarray:
    table = np.array([bits_rgba(v) for v in range(2 ** n_bits)], dtype=np.uint8)
    v = np.nan_to_num(np.asarray(values, dtype=float), nan=0.0)
    idx = np.clip(v, 0, 2 ** n_bits - 1).astype(np.int64)
    return table[idx]


def _ramp_rgba(values: np.ndarray, style: Style) -> np.ndarray:
    pos = np.array([p for p, _ in RAMP])
    rgb = np.array([c for _, c in RAMP], dtype=float)
    finite = np.isfinite(values)
    u = np.clip((np.where(finite, values, style.vmin) - style.vmin) / (style.vmax - style.vmin), 0.0, 1.0)
    out = np.zeros((*values.shape, 4), dtype=np.uint8)
    for k in range(3):
        out[..., k] = np.round(np.interp(u, pos, rgb[:, k])).astype(np.uint8)
    shown = finite & ((values > style.vmin) if style.clear_below else True)
    out[..., 3] = np.where(shown, RAMP_ALPHA, 0)
    return out


def png_bytes(rgba: np.ndarray) -> bytes:
    """A PNG file of RGBA pixels (rows north to south). An empty window gives a 1 x 1 transparent image."""
    if rgba.size == 0:
        rgba = np.zeros((1, 1, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _hex(rgb: tuple[int, ...]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def legend(info: LayerInfo, style: Style) -> dict:
    """The legend of a layer drawn in a style (JSON form)."""
    base = {"name": info.name, "units": info.units, "long_name": info.long_name, "mode": style.mode}
    if style.mode == "levels":
        entries = [{"value": v, "label": LEVEL_NAMES[v], "colour": LEVEL_HEX[v], "rgba": list(LEVEL_RGBA[v])}
                   for v in sorted(LEVEL_RGBA)]
        clear = "level 0 (none)" + ("" if style.show_nodata else " and -1 (no data)")
        return {**base, "entries": entries, "transparent": clear}
    if style.mode == "bits":
        entries = []
        for v in range(1, 2 ** len(style.bits)):
            names = [name for k, name in enumerate(style.bits) if v >> k & 1]
            rgba = bits_rgba(v)
            entries.append({"value": v, "label": " + ".join(names), "colour": _hex(rgba[:3]), "rgba": list(rgba)})
        bits = [{"bit": 1 << k, "label": name} for k, name in enumerate(style.bits)]
        return {**base, "bits": bits, "entries": entries, "transparent": "0 (no bit set)"}
    stops = [{"value": style.vmin + p * (style.vmax - style.vmin), "colour": _hex(c)} for p, c in RAMP]
    clear = f"no data and values <= {style.vmin:g}" if style.clear_below else "no data"
    return {**base, "vmin": style.vmin, "vmax": style.vmax, "stops": stops, "alpha": RAMP_ALPHA,
            "transparent": clear}


def check_range(vmin: float | None, vmax: float | None) -> str | None:
    """A problem with a requested display range, or None."""
    for name, v in (("vmin", vmin), ("vmax", vmax)):
        if v is not None and not math.isfinite(v):
            return f"{name} must be finite"
    if vmin is not None and vmax is not None and not vmax > vmin:
        return f"vmax ({vmax}) must be greater than vmin ({vmin})"
    return None
