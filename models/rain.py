"""Rain accumulation component: rolling 1/3/6/12 h totals and Shanghai and national signals."""

from __future__ import annotations

import numpy as np
import xarray as xr

from models._component import GRID_DIMS, LEVEL_FLAGS, Component, Reference, Var
from models.config import RainConfig
from models.kernels.rain import rolling_sums, signal_level

SHANGHAI = Reference("Shanghai Meteorological Service, rainstorm warning signals (blue 1 h >= 35 mm or 6 h "
                     ">= 50 mm; yellow 50/80; orange 80/100); as quoted at https://twehdei.com/tqwd/17560.html")
CMA = Reference("China Meteorological Administration, Order No. 16 (2007), rainstorm warning signals "
                "(blue 50 mm/12 h, yellow 50 mm/6 h, orange 50 mm/3 h, red 100 mm/3 h)")

WINDOWS_H = (1, 3, 6, 12)
_TOL_M = 1e-9  # [design] sums of bin totals carry rounding; thresholds are lowered by 1e-6 mm


def signal_tables(cfg: RainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Shanghai raise, Shanghai clear, CMA) tables (4 levels x 4 windows 1/3/6/12 h) in m."""
    inf = np.inf
    sh = np.array([[a, inf, b, inf] for a, b in zip(cfg.shanghai_1h, cfg.shanghai_6h, strict=True)])
    sh_clear = np.where(np.isinf(sh), inf, sh - cfg.clear_margin)
    cma = np.array([[inf, c3, c6, c12] for c3, c6, c12 in zip(cfg.cma_3h, cfg.cma_6h, cfg.cma_12h, strict=True)])
    return sh * 1e-3 - _TOL_M, sh_clear * 1e-3 - _TOL_M, cma * 1e-3 - _TOL_M


class RainAccumulation(Component):
    """Rolling rain totals per cell from the rain rate, and rainstorm signal levels.

    Rain is added to time bins of ``bin_seconds``; a window of W hours sums the last
    W x 3600 / bin_seconds bins including the one being filled. Signal levels: 0 none, 1 blue,
    2 yellow, 3 orange, 4 red (Shanghai local rules and national CMA rules side by side;
    Shanghai red is unverified, see RainConfig). Memory: n_cells x 12 h / bin_seconds floats.
    """

    name = "rain_accumulation"
    inputs = (Var("rain_rate", "mm h-1", GRID_DIMS, "float64", "rain intensity", valid_range=(0, 120)),)
    outputs = (
        Var("rain_1h", "mm", GRID_DIMS, "float64", "rain accumulated over the last hour"),
        Var("rain_3h", "mm", GRID_DIMS, "float64", "rain accumulated over the last three hours"),
        Var("rain_6h", "mm", GRID_DIMS, "float64", "rain accumulated over the last six hours"),
        Var("rain_12h", "mm", GRID_DIMS, "float64", "rain accumulated over the last twelve hours"),
        Var("rain_signal", "1", GRID_DIMS, "int8", "Shanghai rainstorm signal level, 0 none to 4 red",
            flags=LEVEL_FLAGS),
        Var("rain_signal_cma", "1", GRID_DIMS, "int8", "national CMA rainstorm signal level, 0 none to 4 red",
            flags=LEVEL_FLAGS),
    )
    references = (SHANGHAI, CMA)
    state_vars = ("ring", "pos", "t_in_bin")

    def __init__(self, ds: xr.Dataset, config: RainConfig | None = None):
        self.check_inputs(ds)
        self.config = cfg = config or RainConfig()
        nbins_h = 3600.0 / cfg.bin_seconds
        if abs(nbins_h - round(nbins_h)) > 1e-9:
            raise ValueError("rain: bin_seconds must divide one hour")
        self.windows = np.array([round(w * nbins_h) for w in WINDOWS_H], dtype=np.int64)
        self.shape = ds["rain_rate"].shape
        self.coords = {d: ds.coords[d] for d in GRID_DIMS if d in ds.coords}
        self.ring = np.zeros((int(np.prod(self.shape)), int(self.windows.max())))
        self.pos = 0
        self.t_in_bin = 0.0
        self.sh, _, self.cma = signal_tables(cfg)

    def add(self, rate_m_s: np.ndarray, dt: float) -> None:
        """Add rain at ``rate_m_s`` [m s-1] (flat, one per cell) for ``dt`` [s], across bins."""
        bin_s = self.config.bin_seconds
        left = float(dt)
        while left > 1e-9 * bin_s:
            if self.t_in_bin >= bin_s * (1 - 1e-12):
                self.pos = (self.pos + 1) % self.ring.shape[1]
                self.ring[:, self.pos] = 0.0
                self.t_in_bin = 0.0
            step = min(left, bin_s - self.t_in_bin)
            self.ring[:, self.pos] += rate_m_s * step
            self.t_in_bin += step
            left -= step

    def update(self, ds: xr.Dataset, dt: float) -> xr.Dataset:
        """Accumulate ``rain_rate`` over ``dt`` [s] and return totals and signal levels."""
        self.check_inputs(ds)
        self.add(self.read(ds, "rain_rate").ravel(), dt)
        acc = np.empty((self.windows.size, self.ring.shape[0]))
        rolling_sums(self.ring, self.pos, self.windows, acc)
        lvl_sh = np.empty(acc.shape[1], np.int8)
        lvl_cma = np.empty(acc.shape[1], np.int8)
        signal_level(acc, self.sh, lvl_sh)
        signal_level(acc, self.cma, lvl_cma)
        arrays = {f"rain_{w}h": acc[i].reshape(self.shape) for i, w in enumerate(WINDOWS_H)}
        arrays["rain_signal"] = lvl_sh.reshape(self.shape)
        arrays["rain_signal_cma"] = lvl_cma.reshape(self.shape)
        return self.outputs_from_si(arrays, self.coords)
