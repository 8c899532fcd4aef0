"""FloodModel: rain minus drainage on the grid, routed by the local inertial shallow-water scheme."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


VILLEMONTE = Reference("Villemonte, J. R. (1947). Submerged weir discharge studies. Engineering News-Record 139, "
                       "866-869 (submergence factor (1 - (H2/H1)^1.5)^0.385) [mem].")
WEIR = Reference("Henderson, F. M. (1966). Open Channel Flow, ch. 6; Chow, V. T. (1959). Open-Channel Hydraulics; "
                 "Bos, M. G. (1989). Discharge Measurement Structures, ILRI 20 (broad-crested weir "
                 "q = C_d (2/3)^1.5 sqrt(g) H^1.5) [mem].")


@dataclass(frozen=True, eq=False)
class Hydrograph:
    """A discharge [m3 s-1] over model time [s]: piecewise linear between the points, the end values held outside.

    Parameters
    ----------
    times_s : sequence of float
        Strictly increasing model times. [s]
    discharge_m3s : sequence of float
        Discharge at each time, >= 0. [m3 s-1]
    """

    times_s: np.ndarray
    discharge_m3s: np.ndarray

    def __post_init__(self) -> None:
        t = np.atleast_1d(np.asarray(self.times_s, dtype=float)).copy()
        q = np.atleast_1d(np.asarray(self.discharge_m3s, dtype=float)).copy()
        if t.ndim != 1 or t.shape != q.shape or t.size == 0:
            raise ValueError(f"Hydrograph: times ({t.shape}) and discharges ({q.shape}) must be two 1-D sequences "
                             "of the same length >= 1")
        if not (np.isfinite(t).all() and np.isfinite(q).all()):
            raise ValueError("Hydrograph: times and discharges must be finite")
        if (np.diff(t) <= 0).any():
            raise ValueError("Hydrograph: times must be strictly increasing")
        if (q < 0).any():
            raise ValueError(f"Hydrograph: discharge must be >= 0 m3/s, got {q.min():g}")
        t.flags.writeable = q.flags.writeable = False
        object.__setattr__(self, "times_s", t)
        object.__setattr__(self, "discharge_m3s", q)

    @classmethod
    def constant(cls, q: float) -> Hydrograph:
        """A steady discharge ``q`` [m3 s-1] at all times."""
        return cls([0.0], [q])

    def at(self, t: float) -> float:
        """Discharge at model time ``t`` [s]. [m3 s-1]"""
        return float(np.interp(t, self.times_s, self.discharge_m3s))

    def volume(self, t0: float, t1: float) -> float:
        """Exact volume between ``t0`` and ``t1`` [s] (t1 >= t0): the integral of the piecewise-linear
        discharge. [m3]"""
        if t1 < t0:
            raise ValueError(f"Hydrograph.volume: t1 ({t1}) is before t0 ({t0})")
        t, q = self.times_s, self.discharge_m3s
        if t.size == 1:
            return float(q[0]) * (t1 - t0)
        lo, hi = np.searchsorted(t, t0, "right"), np.searchsorted(t, t1, "left")
        if lo == hi:  # no knot inside: one trapezoid
            return 0.5 * (float(np.interp(t0, t, q)) + float(np.interp(t1, t, q))) * (t1 - t0)
        ts = np.concatenate(([t0], t[lo:hi], [t1]))
        qs = np.interp(ts, t, q)
        return float(np.sum(0.5 * (qs[1:] + qs[:-1]) * np.diff(ts)))


@dataclass(frozen=True, eq=False)
class Inflow:
    """A discharge put onto the grid: a point (one cell) or a line or area (several cells).

    Parameters
    ----------
    name : str
        Names the inflow in errors and in ``FloodModel.inflow_volumes``.
    cells : sequence of int
        Flat cell indices (row * nx + column) that receive the water.
    weights : sequence of float
        Share of the discharge per cell, >= 0, summing to 1 (normalised to exactly 1 here). [1]
    hydrograph : Hydrograph
        Discharge over model time. [m3 s-1]
    """

    name: str
    cells: np.ndarray
    weights: np.ndarray
    hydrograph: Hydrograph

    def __post_init__(self) -> None:
        cells = np.atleast_1d(np.asarray(self.cells))
        w = np.atleast_1d(np.asarray(self.weights, dtype=float))
        if cells.ndim != 1 or cells.size == 0 or cells.shape != w.shape:
            raise ValueError(f"inflow {self.name!r}: cells ({cells.shape}) and weights ({w.shape}) must be 1-D, "
                             "non-empty and of the same length")
        if not np.issubdtype(cells.dtype, np.integer):
            raise ValueError(f"inflow {self.name!r}: cells must be integer flat cell indices")
        if not np.isfinite(w).all() or (w < 0).any() or abs(w.sum() - 1.0) > 1e-6:
            raise ValueError(f"inflow {self.name!r}: weights must be >= 0 and sum to 1, got sum {w.sum():g}")
        if not isinstance(self.hydrograph, Hydrograph):
            raise ValueError(f"inflow {self.name!r}: hydrograph must be a models.flood.Hydrograph")
        cells, w = cells.astype(np.int64), w / w.sum()
        cells.flags.writeable = w.flags.writeable = False
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "weights", w)


class FloodModel(Component):
    """Surface water on the twin grid: runoff source, drainage sink, local inertial routing.

    Buildings (``building_fraction >= wall_fraction``) are walls (no flow, no rain: roofs drain to
    the sewer); ``water_mask`` cells (river, canal) are open outlets whose water leaves the grid;
    grid edges are closed or open (a dry ghost cell outside). Rain [mm h-1] x runoff coefficient is
    the source; drainage capacity [mm h-1] is a sink d = min(h / dt + source, capacity).

    ``run_one_step(dt)`` advances exactly ``dt`` seconds in n = ceil(dt / dt_cfl) equal sub-steps, each within the
    CFL step dt_cfl = alpha dx / sqrt(g h_max) (Bates et al. 2010 eq. 12); the remaining time is split again if
    dt_cfl shrinks on the way, so there is never a short tail step. The de Almeida theta smoothing acts per unit
    time: a sub-step dt_sub uses theta_eff = 1 - (1 - theta) dt_sub / dt_cfl (theta at the CFL step), so the
    answer does not depend on the caller's dt (docs/science/flood.md 2.1, "Stepping").

    Sources and boundaries besides rain: discharges (`set_inflows`, `Inflow` with a `Hydrograph`), a river held at
    a time-varying level (`set_river`), barriers with broad-crested weir flow over their crest (`set_barriers`:
    flood walls) and storm-drain outfalls that close while the river is above their invert (`set_outfalls`).
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
        Var("wall_overtopping", "m3 s-1", GRID_DIMS, "float64",
            "discharge entering the cell across barrier (flood-wall) faces, mean over the last step"),
    )
    references = (BATES, DE_ALMEIDA, HUNTER, WEIR, VILLEMONTE)
    state_vars = ("h", "qx", "qy", "src", "_src_sum", "drained", "outflow", "rowmax", "_hmax", "time", "n_substeps",
                  "volume0", "rain_volume", "boundary_volume", "injected_volume", "inflow_volume", "inflow_volumes",
                  "river_volume", "overtopping_volume", "wall_overtopping")
    # added in issue 22: a snapshot written before them restores with these at zero (`restore_state`)
    _new_state = ("inflow_volume", "inflow_volumes", "river_volume", "overtopping_volume", "wall_overtopping")
    # not in a snapshot: a boundary-depth function (`set_boundary_depth`, scenarios only), scratch arrays, and the
    # configuration the provider sets again (`provider_set`)
    provider_set = ("outlet", "_inflows", "_river_mask", "_river_idx", "_river_func", "_river_level", "_barriers",
                    "_crests", "_service", "_invert", "_pumped", "outfalls_open", "_drain_now", "_held", "_wall_flux",
                    "_outlet_now", "_clock")
    """Not in a snapshot: what the provider sets again in ``before_flood`` after a restore (`set_inflows`, `set_river`,
    `set_barriers`, `set_outfalls`: the inflows, the river mask and level function, barrier faces, outfalls) and what
    each step derives from it (the river level now, the outfalls' open state, the coded wall and outlet arrays)."""
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
        # issue 22: discharges, river, barriers, outfalls
        self.inflow_volume = self.river_volume = 0.0
        self.inflow_volumes: dict[str, float] = {}
        self.overtopping_volume = np.zeros(self.shape)
        self.wall_overtopping = np.zeros(self.shape)
        self._water = self.outlet.copy()  # the static water_mask: outlets unless a river level holds them
        self._inflows: list[Inflow] = []
        self._river_mask = np.zeros(self.shape, bool)
        self._river_idx = np.zeros(0, np.int64)
        self._river_func: Callable[[float], float] | None = None
        self._river_level = math.nan
        self._barriers: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]] = []
        self._service = np.full(self.shape, -1, np.int64)
        self._invert = np.zeros(0)
        self._pumped = np.zeros(0, bool)
        self.outfalls_open = np.zeros(0, bool)
        self._drain_now = self.drain
        self._clock = self.time  # model time within run_one_step [s]
        # a held river (`set_river` with a level) is coded into the arrays the kernels take: bit 2 of the wall codes
        # closes the faces between two river cells, bit 2 of the outlet codes leaves river cells out of h_max;
        # without one they are the plain `wall` and `outlet` arrays (the same objects)
        self._wall_flux = self._outlet_now = np.zeros(0, np.int8)
        self._held: np.ndarray | None = None  # int8 (ny, nx): 2 on held river cells, else 0
        self._crests: tuple[np.ndarray, np.ndarray] | None = None
        self._bank_z = math.inf  # lowest flow-depth datum of a river cell's open inertial face [m]
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

    def set_inflows(self, inflows: Sequence[Inflow]) -> None:
        """Replace all discharge sources. Each sub-step adds exactly ``hydrograph.volume(t, t + dt_sub)`` [m3],
        spread over the inflow's cells by weight; counted in `inflow_volume`, `inflow_volumes` and the mass balance.

        Raises ValueError for an inflow onto a wall (building) cell or off the grid, or two inflows of one name.
        """
        inflows = list(inflows)
        names = [f.name for f in inflows]
        if len(set(names)) != len(names):
            raise ValueError(f"flood: inflow names must be unique, got {names}")
        for f in inflows:
            if not isinstance(f, Inflow):
                raise ValueError(f"flood: set_inflows takes models.flood.Inflow items, got {type(f).__name__}")
            if f.cells.min() < 0 or f.cells.max() >= self.h.size:
                raise ValueError(f"flood: inflow {f.name!r} has cells off the grid (0 .. {self.h.size - 1})")
            walls = f.cells[self.wall.ravel()[f.cells] == 1]
            if walls.size:
                raise ValueError(f"flood: inflow {f.name!r} falls on wall (building) cell(s) {walls[:5].tolist()}")
        for name in names:
            self.inflow_volumes.setdefault(name, 0.0)
        self._inflows = inflows

    def set_river(self, mask: np.ndarray, level: Callable[[float], float] | None) -> None:
        """River cells ``mask`` (bool, (ny, nx)) and their water level ``level(t)`` [m, grid datum] at model time t [s].

        With a level, the river cells hold their water surface at level(t) after every sub-step (depth
        max(level - z, 0)); they are no longer outlets, and the water this takes or gives is `river_volume`
        (in the mass balance). Drainage is off on them. The faces between two held river cells carry no flow and
        the river's depth is not in h_max: the step is set by the land and the river's open bank faces
        (`_river_bank_z`; docs/science/flood.md 2.1, "River, flood wall and outfalls"). With ``level`` None they
        are plain outlets (water reaching them leaves the grid), as ``water_mask`` cells are. Wall cells in
        ``mask`` are left out.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.shape:
            raise ValueError(f"flood: river mask has shape {mask.shape}, the grid {self.shape}")
        if level is not None and not callable(level):
            raise ValueError("flood: river level must be a callable t [s] -> level [m] or None")
        mask = mask & (self.wall == 0)
        self._river_mask = mask
        self._river_idx = np.flatnonzero(mask)
        self._river_func = level
        if level is None:
            self.outlet = (self._water.astype(bool) | mask).astype(np.int8)
            self._river_level = math.nan
            self._held = None
        else:
            self.outlet = (self._water.astype(bool) & ~mask).astype(np.int8)
            self._held = np.where(mask, 2, 0).astype(np.int8)
            self._wall_flux = self.wall | self._held
            self._outlet_now = self.outlet | self._held
        self._bank_z = self._river_bank_z()
        if level is not None:
            self._hold_river(self.time)
        self._drain_now = self._drain_with_outfalls()

    def _river_bank_z(self) -> float:
        """The lowest flow-depth datum max(z_river, z_other) [m] of the faces between a held river cell and a cell
        off the river that carry the inertial flow (no wall either side, no barrier with its crest above both beds:
        weir faces have their own step-bounded discharge, `models.kernels.flood.weir_flux`); inf without one.

        Held river cells are left out of h_max (their faces with each other are closed), but such a face's flow
        depth max(level, eta_other) - max(z_river, z_other) is at most max(level - this, h_other), so
        `stable_dt` takes h_max = max(h_max off the river, level - this) [design]."""
        if self._held is None:
            return math.inf
        river, wall, z = self._river_mask, self.wall != 0, self.z
        cx, cy = self._crests if self._crests is not None else (None, None)
        best = math.inf
        for axis, crest in ((1, cx), (0, cy)):
            lo = (slice(None), slice(None, -1)) if axis == 1 else (slice(None, -1), slice(None))
            hi = (slice(None), slice(1, None)) if axis == 1 else (slice(1, None), slice(None))
            zf = np.maximum(z[lo], z[hi])
            bank = (river[lo] != river[hi]) & ~wall[lo] & ~wall[hi]
            if crest is not None:
                inner = crest[:, 1:-1] if axis == 1 else crest[1:-1, :]
                with np.errstate(invalid="ignore"):
                    bank &= ~(np.isfinite(inner) & (inner > zf))
            if bank.any():
                best = min(best, float(zf[bank].min()))
        return best

    def set_barriers(self, crest_x: np.ndarray, crest_y: np.ndarray) -> None:
        """Barriers (flood walls) on cell faces: crest elevation [m, grid datum], NaN = no barrier.

        ``crest_x`` (ny, nx + 1) on x faces (face j is west of cell j), ``crest_y`` (ny + 1, nx) on y faces (face i
        is north of row i). Flow over a barrier face follows the broad-crested weir law with Villemonte submergence
        (`models.kernels.flood.weir_flux`, ``FloodConfig.weir_cd``); no flow while both water surfaces are below
        the crest. Faces on the grid's edge are ignored (the edge is closed or open as configured).
        """
        ny, nx = self.shape
        cx, cy = np.asarray(crest_x, dtype=float), np.asarray(crest_y, dtype=float)
        if cx.shape != (ny, nx + 1) or cy.shape != (ny + 1, nx):
            raise ValueError(f"flood: barrier crests must have shapes {(ny, nx + 1)} (x faces) and {(ny + 1, nx)} "
                             f"(y faces), got {cx.shape} and {cy.shape}")
        self._barriers = []
        self._crests = (cx.copy(), cy.copy())
        self._bank_z = self._river_bank_z()
        for crest, along_x in ((cx, 1), (cy, 0)):
            inner = crest[:, 1:-1] if along_x else crest[1:-1, :]
            fi, fj = np.nonzero(np.isfinite(inner))
            if along_x:
                fj = fj + 1
            else:
                fi = fi + 1
            if fi.size == 0:
                continue
            fi, fj = fi.astype(np.int64), fj.astype(np.int64)
            a = (fi * nx + fj - 1) if along_x else ((fi - 1) * nx + fj)  # flat index of the cell on the - side
            b = fi * nx + fj
            self._barriers.append((fi, fj, np.ascontiguousarray(crest[fi, fj]), along_x, a, b))

    def set_outfalls(self, service: np.ndarray, invert: np.ndarray, pumped: np.ndarray) -> None:
        """Storm-drain outfalls: ``service`` int (ny, nx) the outfall each cell drains to (-1: none, drains as
        always), ``invert`` (n,) the outfall invert [m, grid datum], ``pumped`` (n,) bool.

        A gravity outfall is closed while the river level is above its invert: the drainage of its cells is 0.
        Pumped outfalls always drain. `outfalls_open` holds the current state (all open without a river level).
        """
        service = np.asarray(service)
        invert = np.atleast_1d(np.asarray(invert, dtype=float))
        pumped = np.atleast_1d(np.asarray(pumped, dtype=bool))
        if service.shape != self.shape or not np.issubdtype(service.dtype, np.integer):
            raise ValueError(f"flood: outfall service must be an integer array of shape {self.shape}")
        if invert.ndim != 1 or pumped.shape != invert.shape or not np.isfinite(invert).all():
            raise ValueError("flood: outfall invert and pumped must be 1-D of the same length, inverts finite")
        if service.size and (service.min() < -1 or service.max() >= invert.size):
            raise ValueError(f"flood: outfall service indices must be -1 .. {invert.size - 1}")
        self._service = service.astype(np.int64)
        self._invert, self._pumped = invert, pumped
        self.outfalls_open = np.ones(invert.size, bool)
        self._drain_now = self._drain_with_outfalls()

    # ------------------------------------------------------------- stepping
    def stable_dt(self) -> float:
        """CFL time step alpha dx / sqrt(g h_max), at most ``dt_max``; h_max leaves held river cells out but counts
        the flow depth of their open bank faces (`set_river`). [s]"""
        cfg = self.config
        step = cfg.dt_max if self._hmax <= cfg.h_min else min(cfg.dt_max, cfg.alpha * self.dx / math.sqrt(
            cfg.g * self._hmax))
        return min(step, self._inflow_dt()) if self._inflows else step

    def _inflow_dt(self) -> float:
        """The longest step in which no inflow cell receives more than ``inflow_courant`` times its depth (at least
        ``inflow_h_ref``) [s]: an explicit step with a point inflow far above its cell's depth overshoots."""
        cfg, flat, t = self.config, self.h.reshape(-1), self._clock
        step = math.inf
        for f in self._inflows:
            q = max(f.hydrograph.at(t), f.hydrograph.at(t + cfg.dt_max))  # m3 s-1
            if q > 0.0:
                rate = q * f.weights / (self.dx * self.dx)  # m s-1 per cell
                wet = rate > 0.0
                step = min(step, float((np.maximum(flat[f.cells[wet]], cfg.inflow_h_ref) / rate[wet]).min()))
        return cfg.inflow_courant * step

    def run_one_step(self, dt: float) -> None:
        """Advance exactly ``dt`` [s] in n = ceil(dt / stable_dt) equal sub-steps (the remaining time split again
        if the CFL step shrinks below the sub-step on the way; never a short tail step)."""
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"flood: dt must be a finite number > 0 s, got {dt}")
        t0, done = self.time, 0.0
        self._clock = t0
        if self._held is not None:  # the provider may have changed the outlets (tide locks) since the last call
            np.bitwise_or(self.outlet.astype(np.int8, copy=False), self._held, out=self._outlet_now)
        if self._river_func is not None:  # the level function may have changed since the last call
            self._hold_river(t0)
            self._refresh_outfalls()
        ot0 = self.overtopping_volume.copy() if self._barriers else None
        while done < dt:
            remaining = dt - done
            n = max(1, math.ceil(remaining / self.stable_dt() * (1.0 - 1e-12)))
            step = remaining / n
            for k in range(n):
                if k and step > self.stable_dt():
                    break  # the CFL step shrank: split what is left again
                if k == n - 1:
                    self._substep(dt - done, t0 + done)
                    done = dt
                else:
                    self._substep(step, t0 + done)
                    done += step
        self.time = t0 + dt
        if ot0 is not None:
            self.wall_overtopping = (self.overtopping_volume - ot0) / dt
        elif self.wall_overtopping.any():
            self.wall_overtopping = np.zeros(self.shape)

    def theta_eff(self, dt: float) -> float:
        """The q-centering weight of a sub-step ``dt`` [s]: 1 - (1 - theta) min(dt / dt_cfl, 1). [1]

        de Almeida et al. (2012) eq. 13 mixes (1 - theta) of the neighbours' discharge in per step, so a fixed theta
        smooths more per second at short steps and the answer depends on the step. Scaled by dt / dt_cfl it smooths
        at the same rate per second at any step (theta itself at the CFL step) [design]. dt_cfl = alpha dx /
        sqrt(g h_max) is not capped by ``dt_max`` here, so ``dt_max`` limits the step without changing the
        smoothing."""
        cfg = self.config
        cfl = cfg.alpha * self.dx / math.sqrt(cfg.g * max(self._hmax, cfg.h_min))  # not capped by dt_max
        return 1.0 - (1.0 - cfg.theta) * min(dt / cfl, 1.0)

    def _substep(self, dt: float, t: float) -> None:
        cfg = self.config
        self._clock = t + dt
        held = self._held is not None  # a held river: its codes in the wall and outlet arrays
        wall, outlet = (self._wall_flux, self._outlet_now) if held else (self.wall, self.outlet)
        self._flux(self.h, self.z, wall, self.qx, self.qy, dt, self.dx, cfg.manning, self.theta_eff(dt), cfg.g,
                   cfg.h_min, int(cfg.boundary == "open"), self.qx_new, self.qy_new)
        for fi, fj, crest, along_x, _a, _b in self._barriers:
            fk.weir_flux(self.h, self.z, wall, fi, fj, crest, along_x, dt, self.dx, cfg.weir_cd, cfg.g,
                         self.qx_new if along_x else self.qy_new)
        if self._inflows:  # after the fluxes, before the limiter: the water arrives within the step
            self._add_inflows(dt, t)
        self._limit(self.h, self.qx_new, self.qy_new, dt, self.dx, self.f)
        self._cont(self.h, self.qx_new, self.qy_new, self.f, self.src, self._drain_now, outlet, dt, self.dx,
                   self.h_new, self.qx, self.qy, self.drained, self.outflow, self.rowmax)
        self.h, self.h_new = self.h_new, self.h
        area = self.dx * self.dx
        for fi, fj, _crest, along_x, a, b in self._barriers:
            q = (self.qx if along_x else self.qy)[fi, fj]  # as limited: the water that crossed
            np.add.at(self.overtopping_volume.reshape(-1), np.where(q > 0.0, b, a), np.abs(q) * (dt * self.dx))
        self.rain_volume += dt * self._src_sum * area
        if cfg.boundary == "open":
            self.boundary_volume += dt * self.dx * float(
                self.qx[:, -1].sum() - self.qx[:, 0].sum() + self.qy[-1, :].sum() - self.qy[0, :].sum())
        self._hmax = float(self.rowmax.max())
        if self._river_func is not None:
            self._hold_river(t + dt)
            if self._invert.size:
                self._refresh_outfalls()
        if self._fixed is not None:
            mask, func = self._fixed
            new = np.broadcast_to(func(t + dt), self.shape)[mask]
            self.injected_volume += float((new - self.h[mask]).sum()) * area
            self.h[mask] = new
            self._hmax = max(self._hmax, float(new.max()) if new.size else 0.0)
        self.n_substeps += 1

    def _add_inflows(self, dt: float, t: float) -> None:
        """Add the sub-step's inflow volume to the cells' water after the fluxes are computed and before the outflow
        limiter and continuity: it arrives within the step. The limiter then lets the cell pass it on in the same
        step (added after the step, a point inflow above depth x area / dt_sub empties its cell every step, and the
        depth there follows the step length); added before the fluxes, the reported depth would be the head that
        drives the flow minus one step's inflow (docs/science/flood.md 2.1, "Discharge sources")."""
        flat, area = self.h.reshape(-1), self.dx * self.dx
        for f in self._inflows:
            v = f.hydrograph.volume(t, t + dt)
            if v > 0.0:
                np.add.at(flat, f.cells, f.weights * (v / area))
            self.inflow_volume += v
            self.inflow_volumes[f.name] += v

    def _hold_river(self, t: float) -> None:
        """Set the river cells' water surface to the level at ``t`` [s]; the water this takes is `river_volume`."""
        level = float(self._river_func(t))  # type: ignore[misc]
        if not math.isfinite(level):
            raise ValueError(f"flood: the river level at t = {t:g} s is {level}, not a number of metres")
        self._river_level = level
        idx = self._river_idx
        if idx.size:
            flat = self.h.reshape(-1)
            new = np.maximum(level - self.z.reshape(-1)[idx], 0.0)
            self.river_volume += float((new - flat[idx]).sum()) * self.dx * self.dx
            flat[idx] = new
        # the river cells are not in h_max (`continuity` leaves them out of rowmax); their open faces are
        self._hmax = max(self._hmax, level - self._bank_z)

    def _refresh_outfalls(self) -> None:
        """Open or close the gravity outfalls for the current river level; the drainage is rebuilt on a change."""
        if self._invert.size and not np.array_equal(self._pumped | ~(self._river_level > self._invert),
                                                    self.outfalls_open):
            self._drain_now = self._drain_with_outfalls()

    def _drain_with_outfalls(self) -> np.ndarray:
        """Drainage capacity [m s-1] now: 0 on river cells held at a level and on cells of closed outfalls."""
        closed = np.zeros(self.shape, bool)
        if self._river_func is not None:
            closed |= self._river_mask
        if self._invert.size:
            level = self._river_level
            self.outfalls_open = self._pumped | ~(level > self._invert)  # NaN level: open
            served = self._service >= 0
            closed[served] |= ~self.outfalls_open[self._service[served]]
        return np.where(closed, 0.0, self.drain) if closed.any() else self.drain

    @property
    def river_level(self) -> float:
        """The river level now [m, grid datum]; NaN without one (`set_river`)."""
        return self._river_level if self._river_func is not None else math.nan

    @property
    def river_mask(self) -> np.ndarray:
        """River cells held at the river level (bool, (ny, nx)); all False without a level."""
        return self._river_mask.copy() if self._river_func is not None else np.zeros(self.shape, bool)

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
        """(stored - initial - rain - inflows - river + drained + outlets + boundary - injected)
        / max(rain + inflows + |river|, stored). [1]"""
        gained = self.rain_volume + self.inflow_volume + self.river_volume + self.injected_volume
        bal = (self.stored_volume - self.volume0 - gained + self.drained_volume + self.outlet_volume
               + self.boundary_volume)
        return bal / max(self.rain_volume + self.inflow_volume + abs(self.river_volume), self.stored_volume, 1e-300)

    def save_state(self) -> dict[str, Any]:
        state = super().save_state()
        state["inflow_volumes"] = dict(self.inflow_volumes)
        return state

    def restore_state(self, state: dict[str, Any]) -> None:
        """As `Component.restore_state`; a snapshot from before issue 22 restores with the new totals at zero."""
        state = dict(state)
        for name in self._new_state:
            if name not in state:
                state[name] = {} if name == "inflow_volumes" else 0.0 * getattr(self, name)
        super().restore_state(state)
        self.inflow_volumes = {str(k): float(v) for k, v in dict(state["inflow_volumes"]).items()}

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
                  "out_of_validity": flag, "flood_band": band.reshape(self.shape),
                  "wall_overtopping": self.wall_overtopping.copy()}
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
