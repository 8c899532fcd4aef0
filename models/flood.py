"""FloodModel: rain minus drainage on the grid, routed by the local inertial shallow-water scheme."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import xarray as xr

from models._component import GRID_DIMS, Component, Reference, Var
from models.config import FloodConfig
from models.kernels import flood as fk
from models.kernels.bands import classify_bands

BATES = Reference("Bates, P. D., Horritt, M. S., Fewtrell, T. J. (2010). A simple inertial formulation of "
                  "the shallow water equations for efficient two-dimensional flood inundation modelling. "
                  "J. Hydrol. 387, 33-45, eqs. 11 and 12.", "10.1016/j.jhydrol.2010.03.027")
DE_ALMEIDA = Reference("de Almeida, G. A. M., Bates, P., Freer, J. E., Souvignet, M. (2012). Improving the "
                       "stability of a simple formulation of the shallow water equations for 2-D flood "
                       "modeling. Water Resour. Res. 48, W05528, eq. 13 (theta weighting).",
                       "10.1029/2011WR011570")
HUNTER = Reference("Hunter, N. M., Horritt, M. S., Bates, P. D., Wilson, M. D., Werner, M. G. F. (2005). "
                   "An adaptive time step solution for raster-based storage cell modelling of floodplain "
                   "inundation. Adv. Water Resour. 28, 975-991 (analytic wave front).",
                   "10.1016/j.advwatres.2005.03.007")


class FloodModel(Component):
    """Surface water on the twin grid: runoff source, drainage sink, local inertial routing.

    Buildings (``building_fraction >= wall_fraction``) are walls (no flow, no rain: roofs drain to
    the sewer); ``water_mask`` cells (river, canal) are open outlets whose water leaves the grid;
    grid edges are closed or open (a dry ghost cell outside). Rain [mm h-1] x runoff coefficient is
    the source; drainage capacity [mm h-1] is a sink d = min(h / dt + source, capacity).

    ``run_one_step(dt)`` advances exactly ``dt`` seconds in CFL-limited sub-steps
    dt_sub = alpha dx / sqrt(g h_max) (Bates et al. 2010 eq. 12), the last one shortened.
    Cells with Froude > 1 or next to a bore (a depth jump carrying flow) are flagged in
    ``out_of_validity``: the scheme has no advection term and is valid for sub-critical, gradually
    varied flow only (docs/science/flood.md 2.1); its own damping keeps the computed Froude number below 1
    in a dam break whose exact solution is supercritical, hence the bore test. The values are
    kept, not hidden.

    Parameters
    ----------
    ds : xarray.Dataset
        Static layers (elevation, building_fraction, water_mask, runoff_coefficient,
        drainage_capacity) on dims (y, x) with an ``x`` coordinate (cell size from its spacing) or
        a ``cell_size`` attribute [m].
    config : FloodConfig, optional
    parallel : bool
        Use the ``prange`` kernels (threads set with ``numba.set_num_threads``).
    depth : ndarray, optional
        Initial water depth [m]; zero by default.
    """

    name = "flood"
    inputs = (
        Var("elevation", "m", GRID_DIMS, "float64", "ground or water-surface elevation above datum",
            valid_range=(0, 5)),
        Var("building_fraction", "1", GRID_DIMS, "float64", "fraction of the cell covered by building footprints",
            valid_range=(0, 0.6)),
        Var("water_mask", "1", GRID_DIMS, "int8", "cell is mostly open water (river, canal)", valid_range=(0, 0)),
        Var("runoff_coefficient", "1", GRID_DIMS, "float64", "share of rain that becomes surface runoff",
            valid_range=(0.2, 0.9)),
        Var("drainage_capacity", "mm h-1", GRID_DIMS, "float64", "storm-drainage capacity as a rain intensity",
            valid_range=(0, 40)),
        Var("rain_rate", "mm h-1", GRID_DIMS, "float64", "rain intensity", valid_range=(0, 100)),
    )
    outputs = (
        Var("water_depth", "m", GRID_DIMS, "float64", "water depth over ground"),
        Var("water_speed", "m s-1", GRID_DIMS, "float64", "depth-averaged water speed at the cell centre"),
        Var("flow_hazard", "m2 s-1", GRID_DIMS, "float64", "water depth times speed"),
        Var("froude_number", "1", GRID_DIMS, "float64", "Froude number of the flow"),
        Var("out_of_validity", "1", GRID_DIMS, "int8",
            "1 where Froude > 1 or a bore: inertial scheme not valid"),
        Var("flood_band", "1", GRID_DIMS, "int8", "depth band: 0 < 0.15 m, 1 < 0.27 m, 2 < 0.50 m, 3 deeper"),
    )
    references = (BATES, DE_ALMEIDA, HUNTER)
    state_vars = ("h", "qx", "qy", "src", "_src_sum", "drained", "outflow", "rowmax", "_hmax", "time", "n_substeps",
                  "volume0", "rain_volume", "boundary_volume", "injected_volume")
    # not in a snapshot: a boundary-depth function (`set_boundary_depth`, scenarios only) and scratch arrays
    static = ("elevation", "building_fraction", "water_mask", "runoff_coefficient", "drainage_capacity")

    def __init__(self, ds: xr.Dataset, config: FloodConfig | None = None, parallel: bool = False,
                 depth: np.ndarray | None = None, cell_size: float | None = None):
        self.check_inputs(ds, self.static)
        cfg = self.config = config or FloodConfig()
        if cfg.boundary not in ("closed", "open"):
            raise ValueError(f"flood: boundary must be 'closed' or 'open', not {cfg.boundary!r}")
        self.dx = float(cell_size or ds.attrs.get("cell_size") or _spacing(ds))
        self.coords = {d: ds.coords[d] for d in GRID_DIMS if d in ds.coords}
        self.z = self.read(ds, "elevation")
        ny, nx = self.shape = self.z.shape
        self.wall = (self.read(ds, "building_fraction") >= cfg.wall_fraction).astype(np.int8)
        self.outlet = self.read(ds, "water_mask", dtype="int8")
        self.phi = np.where(self.wall == 1, 0.0, self.read(ds, "runoff_coefficient"))
        self.drain = self.read(ds, "drainage_capacity")  # m s-1
        self.h = np.zeros(self.shape) if depth is None else np.array(depth, dtype=float)
        self.h_new = np.zeros(self.shape)
        self.qx, self.qx_new = np.zeros((ny, nx + 1)), np.zeros((ny, nx + 1))
        self.qy, self.qy_new = np.zeros((ny + 1, nx)), np.zeros((ny + 1, nx))
        self.f = np.ones(self.shape)
        self.src = np.zeros(self.shape)
        self._src_sum = 0.0
        self.drained = np.zeros(self.shape)
        self.outflow = np.zeros(self.shape)
        self.rowmax = np.zeros(ny)
        self._hmax = float(self.h.max())
        self.time = 0.0
        self.n_substeps = 0
        self.volume0 = self.stored_volume
        self.rain_volume = self.boundary_volume = self.injected_volume = 0.0
        self._fixed: tuple[np.ndarray, Callable[[float], np.ndarray]] | None = None
        k = (fk.inertial_flux_par, fk.outflow_limit_par, fk.continuity_par) if parallel else \
            (fk.inertial_flux, fk.outflow_limit, fk.continuity)
        self._flux, self._limit, self._cont = k

    # ------------------------------------------------------------ forcing
    def set_rain(self, rain_rate_mm_h: float | np.ndarray) -> None:
        """Set the rain intensity [mm h-1] (scalar or per cell) used until changed."""
        rate = np.broadcast_to(np.asarray(rain_rate_mm_h, dtype=float), self.shape) / 3.6e6
        self.src = np.ascontiguousarray(rate * self.phi)
        self._src_sum = float(self.src.sum())

    def set_boundary_depth(self, mask: np.ndarray, depth: Callable[[float], np.ndarray]) -> None:
        """Hold the depth [m] of ``mask`` cells at ``depth(t)`` (t [s] model time) after every sub-step."""
        self._fixed = (np.asarray(mask, bool), depth)

    # ------------------------------------------------------------- stepping
    def stable_dt(self) -> float:
        """CFL time step alpha dx / sqrt(g h_max), at most ``dt_max``. [s]"""
        cfg = self.config
        if self._hmax <= cfg.h_min:
            return cfg.dt_max
        return min(cfg.dt_max, cfg.alpha * self.dx / math.sqrt(cfg.g * self._hmax))

    def run_one_step(self, dt: float) -> None:
        """Advance exactly ``dt`` [s], sub-stepping for stability."""
        if not dt > 0:
            raise ValueError("flood: dt must be > 0 s")
        t0, done = self.time, 0.0
        while done < dt:
            step = min(self.stable_dt(), dt - done)
            if dt - done - step < 1e-9 * dt:
                step = dt - done
            self._substep(step, t0 + done)
            done += step
        self.time = t0 + dt

    def _substep(self, dt: float, t: float) -> None:
        cfg = self.config
        self._flux(self.h, self.z, self.wall, self.qx, self.qy, dt, self.dx, cfg.manning, cfg.theta, cfg.g,
                   cfg.h_min, int(cfg.boundary == "open"), self.qx_new, self.qy_new)
        self._limit(self.h, self.qx_new, self.qy_new, dt, self.dx, self.f)
        self._cont(self.h, self.qx_new, self.qy_new, self.f, self.src, self.drain, self.outlet, dt, self.dx,
                   self.h_new, self.qx, self.qy, self.drained, self.outflow, self.rowmax)
        self.h, self.h_new = self.h_new, self.h
        area = self.dx * self.dx
        self.rain_volume += dt * self._src_sum * area
        if cfg.boundary == "open":
            self.boundary_volume += dt * self.dx * float(
                self.qx[:, -1].sum() - self.qx[:, 0].sum() + self.qy[-1, :].sum() - self.qy[0, :].sum())
        self._hmax = float(self.rowmax.max())
        if self._fixed is not None:
            mask, func = self._fixed
            new = np.broadcast_to(func(t + dt), self.shape)[mask]
            self.injected_volume += float((new - self.h[mask]).sum()) * area
            self.h[mask] = new
            self._hmax = max(self._hmax, float(new.max()) if new.size else 0.0)
        self.n_substeps += 1

    # ------------------------------------------------------------- bookkeeping
    @property
    def stored_volume(self) -> float:
        """Water on the grid. [m3]"""
        return float(self.h.sum()) * self.dx * self.dx

    @property
    def drained_volume(self) -> float:
        """Water removed by drainage so far. [m3]"""
        return float(self.drained.sum()) * self.dx * self.dx

    @property
    def outlet_volume(self) -> float:
        """Water that left through outlet (river) cells so far. [m3]"""
        return float(self.outflow.sum()) * self.dx * self.dx

    def mass_balance_error(self) -> float:
        """(stored - initial - rain + drained + outlets + boundary - injected) / max(rain, stored). [1]"""
        bal = (self.stored_volume - self.volume0 - self.rain_volume + self.drained_volume + self.outlet_volume
               + self.boundary_volume - self.injected_volume)
        return bal / max(self.rain_volume, self.stored_volume, 1e-300)

    # ------------------------------------------------------------------ outputs
    def fields(self) -> xr.Dataset:
        """The declared outputs for the current state."""
        cfg = self.config
        speed, hv, fr = np.empty(self.shape), np.empty(self.shape), np.empty(self.shape)
        fk.cell_velocity(self.h, self.qx, self.qy, 1e-3, cfg.g, speed, hv, fr)  # still below 1 mm [design]
        band = np.empty(self.h.size, np.int8)
        classify_bands(self.h.ravel(), np.asarray(cfg.depth_raise[1:]), 1, band)
        flag = np.empty(self.shape, np.int8)
        # bores need both sides wetter than 1 cm and a flow above 1e-6 m2/s [design]
        fk.validity_flags(self.h, self.qx, self.qy, fr, cfg.bore_ratio, 0.01, 1e-6, flag)
        arrays = {"water_depth": self.h.copy(), "water_speed": speed, "flow_hazard": hv, "froude_number": fr,
                  "out_of_validity": flag, "flood_band": band.reshape(self.shape)}
        return self.outputs_from_si(arrays, self.coords)

    def update(self, ds: xr.Dataset, dt: float) -> xr.Dataset:
        """Take ``rain_rate`` from ``ds``, advance ``dt`` [s] and return the outputs."""
        self.check_inputs(ds, ("rain_rate",))
        self.set_rain(self.read(ds, "rain_rate", si=False))
        self.run_one_step(dt)
        return self.fields()


def _spacing(ds: xr.Dataset) -> float:
    if "x" in ds.coords and ds.sizes.get("x", 0) > 1:
        return abs(float(ds["x"][1] - ds["x"][0]))
    raise ValueError("flood: give the cell size (an 'x' coordinate, a 'cell_size' attribute or cell_size=)")
