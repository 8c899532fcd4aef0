"""Crowd components: density fused from counting sensors, Fruin LOS, trend, hazard, speed, pressure."""

from __future__ import annotations

import numpy as np
import xarray as xr

from models._component import GRID_DIMS, LOS_FLAGS, Component, Reference, Var
from models.config import CrowdConfig
from models.kernels.bands import classify_bands
from models.kernels.crowd import crowd_pressure, density_trend, fuse_density
from models.kernels.crowdflow import weidmann_speed
from models.kernels.risk import crowd_hazard, projected_density

FRUIN = Reference("Fruin, J. J. (1971). Pedestrian Planning and Design. Metropolitan Association of "
                  "Urban Designers and Environmental Planners, New York. Walkway and queuing LOS tables.")
STILL = Reference("Still, G. K. et al. (2020), crowd risk analysis with the DIM-ICE model, Journal of Place "
                  "Management and Development (Emerald); critical densities 4 and 5 p/m2 as quoted in "
                  "docs/science/crowd.md 1.2",
                  "10.1108/JPMD-10-2019-0090")
WEIDMANN = Reference("Weidmann, U. (1993). Transporttechnik der Fussgaenger. Schriftenreihe des IVT 90, "
                     "ETH Zuerich, 2nd ed.; speed-density law v(rho) in the Kladek form.")
HELBING = Reference("Helbing, D., Johansson, A., Al-Abideen, H. Z. (2007). Dynamics of crowd disasters: "
                    "an empirical study. Phys. Rev. E 75, 046109, eq. 2 (crowd pressure).",
                    "10.1103/PhysRevE.75.046109")


def _coords(ds: xr.Dataset) -> dict:
    return {d: ds.coords[d] for d in GRID_DIMS if d in ds.coords}


class CrowdFusion(Component):
    """Crowd density per cell from counting sensors whose coverage areas may overlap one another and cells.

    The coverage comes in pieces (`twin.district.coverage.shared_coverage`): piece p is the part of cell
    ``piece_cell[p]`` (flat index, row-major over (y, x)) holding the fraction ``piece_fraction[p]`` of the
    cell's walkable area, and every point of it is covered by the same sensors (``cover_sensor[j]`` covers
    ``cover_piece[j]``). Each sensor's count is spread over its coverage by walkable area, so alone it gives
    density = count / walkable area exactly; its variance follows the count (Poisson plus the sensor's
    relative error ``sensor_rel_error``); sensors covering the same piece are combined by inverse variance;
    a cell is the walkable-area-weighted mean of its pieces, so a piece weighs in proportion to its area.
    A sensor's walkable area can be given (``sensor_walkable_area``, the registry's ``walkable_area_m2``);
    the walkable layer under it is then scaled to sum to it. Formulas: `models.kernels.crowd.fuse_density`,
    docs/science/crowd.md 1.4. Uncovered cells: NaN.
    """

    name = "crowd_fusion"
    inputs = (
        Var("sensor_count", "person", ("sensor",), "float64", "people counted by each sensor (NaN: no reading)",
            valid_range=(0, 300)),
        Var("sensor_rel_error", "1", ("sensor",), "float64", "relative standard error of each sensor's count",
            valid_range=(0.05, 0.3)),
        Var("sensor_walkable_area", "m2", ("sensor",), "float64",
            "walkable area each sensor counts over (NaN: the walkable_area layer under its coverage)",
            optional=True, valid_range=(100, 5000)),
        Var("piece_cell", "1", ("piece",), "int64", "flat cell index of each coverage piece", valid_range=(0, 41)),
        Var("piece_fraction", "1", ("piece",), "float64", "fraction of the cell's walkable area in the piece"),
        Var("cover_piece", "1", ("cover",), "int64", "coverage piece of each coverage-table entry",
            valid_range=(0, 4)),
        Var("cover_sensor", "1", ("cover",), "int64", "sensor of each coverage-table entry", valid_range=(0, 4)),
        Var("walkable_area", "m2", GRID_DIMS, "float64", "open ground in the cell people can stand on",
            valid_range=(10, 2500)),
    )
    outputs = (
        Var("crowd_density", "person m-2", GRID_DIMS, "float64", "people per square metre of walkable area"),
        Var("crowd_density_sigma", "person m-2", GRID_DIMS, "float64",
            "standard deviation of the fused crowd density"),
    )
    references = (FRUIN,)

    def __init__(self, ds: xr.Dataset, config: CrowdConfig | None = None):
        self.check_inputs(ds, ("walkable_area",))
        self.config = config or CrowdConfig()

    def update(self, ds: xr.Dataset, dt: float = 0.0) -> xr.Dataset:
        """Fuse the sensor counts in ``ds``; ``dt`` [s] is unused."""
        self.check_inputs(ds)
        area = self.read(ds, "walkable_area")
        count = self.read(ds, "sensor_count")
        rel_error = self.read(ds, "sensor_rel_error")
        sensor_area = (self.read(ds, "sensor_walkable_area") if "sensor_walkable_area" in ds
                       else np.full(count.size, np.nan))
        piece_cell, piece_fraction = self.read(ds, "piece_cell"), self.read(ds, "piece_fraction")
        cover_piece, cover_sensor = self.read(ds, "cover_piece"), self.read(ds, "cover_sensor")
        _check_table(piece_cell, area.size, "piece_cell", "the grid's cells")
        _check_table(cover_piece, piece_cell.size, "cover_piece", "the pieces")
        _check_table(cover_sensor, count.size, "cover_sensor", "the sensors")
        if rel_error.size != count.size or sensor_area.size != count.size:
            raise ValueError("crowd_fusion: sensor_rel_error and sensor_walkable_area need one value per sensor")
        if not (np.isfinite(rel_error) & (rel_error >= 0)).all():
            raise ValueError("crowd_fusion: sensor_rel_error must be finite and >= 0")
        rho = np.empty(area.size)
        sig = np.empty(area.size)
        fuse_density(piece_cell, piece_fraction, cover_piece, cover_sensor, count, rel_error, sensor_area,
                     area.ravel(), rho, sig)
        return self.outputs_from_si({"crowd_density": rho.reshape(area.shape),
                                     "crowd_density_sigma": sig.reshape(area.shape)}, _coords(ds))


def _check_table(index: np.ndarray, size: int, name: str, what: str) -> None:
    """Raise ``ValueError`` where an index of the coverage table points outside ``size`` items."""
    if index.size and (index.min() < 0 or index.max() >= size):
        raise ValueError(f"crowd_fusion: {name} outside {what} (0..{size - 1})")


class CrowdState(Component):
    """Crowd state per cell: Fruin LOS, density trend, normalised hazard, projected density, Weidmann speed, pressure.

    The hazard is of the observed density (and pressure); the trend only enters ``crowd_projected``, the density
    the crowd reaches in ``trend_horizon`` seconds if it keeps rising (the forecast, docs/science/alerts.md 5.7).

    The trend takes one sample per reading: ``crowd_time`` (the time of the reading behind each cell's density) if
    given, else every update is a new reading (a simulated field). Stateful across ticks (density and time at the
    last trend sample, a clock of the updates, smoothed trend, EWMA velocity mean and variance for
    Helbing's pressure). Crowd pressure needs ``crowd_velocity_x/y``; without them it is NaN, and it
    never raises the hazard on its own (only where density >= ``pressure_min_density``).
    Fruin LOS codes: 0 A .. 5 F, -1 no data; walkway table (density from the ft2 space table)
    and queuing table (docs/science/crowd.md 1.1).
    """

    name = "crowd_state"
    inputs = (
        Var("crowd_density", "person m-2", GRID_DIMS, "float64", "people per square metre of walkable area",
            valid_range=(0, 7)),
        Var("crowd_time", "s", GRID_DIMS, "float64", "time of the reading behind the crowd density", optional=True),
        Var("crowd_velocity_x", "m s-1", GRID_DIMS, "float64", "mean crowd velocity, x component",
            optional=True, valid_range=(-1.5, 1.5)),
        Var("crowd_velocity_y", "m s-1", GRID_DIMS, "float64", "mean crowd velocity, y component",
            optional=True, valid_range=(-1.5, 1.5)),
    )
    outputs = (
        Var("crowd_los", "1", GRID_DIMS, "int8", "Fruin walkway level of service, 0 A to 5 F, -1 no data",
            flags=LOS_FLAGS),
        Var("crowd_los_queue", "1", GRID_DIMS, "int8", "Fruin queuing level of service, 0 A to 5 F, -1 no data",
            flags=LOS_FLAGS),
        Var("crowd_trend", "person m-2 s-1", GRID_DIMS, "float64", "smoothed rate of change of crowd density"),
        Var("crowd_hazard", "1", GRID_DIMS, "float64", "normalised crowd hazard of the observed density, 0 to 1"),
        Var("crowd_projected", "person m-2", GRID_DIMS, "float64",
            "density the crowd's trend reaches in 5 minutes (a forecast, never an observed level)"),
        Var("walking_speed", "m s-1", GRID_DIMS, "float64", "Weidmann walking speed at the crowd density"),
        Var("pedestrian_flow", "person m-1 s-1", GRID_DIMS, "float64", "Weidmann specific pedestrian flow"),
        Var("crowd_pressure", "s-2", GRID_DIMS, "float64", "Helbing crowd pressure, density x velocity variance"),
    )
    references = (FRUIN, STILL, WEIDMANN, HELBING)
    state_vars = ("prev", "prev_t", "clock", "trend", "u_mean", "v_mean", "var")

    def __init__(self, ds: xr.Dataset, config: CrowdConfig | None = None):
        self.check_inputs(ds, ("crowd_density",))
        self.config = config or CrowdConfig()
        n = ds["crowd_density"].size
        self.shape = ds["crowd_density"].shape
        self.prev = np.full(n, np.nan)
        self.prev_t = np.full(n, np.nan)
        self.clock = 0.0
        self.trend = np.full(n, np.nan)
        self.u_mean = np.full(n, np.nan)
        self.v_mean = np.full(n, np.nan)
        self.var = np.full(n, np.nan)

    def restore_state(self, state: dict) -> None:
        """As :meth:`Component.restore_state`; a state saved before the trend was sampled per reading (no
        ``prev_t``) takes its next reading as a first one."""
        if "prev_t" not in state and "prev" in state:
            state = {**state, "prev_t": np.full(np.shape(state["prev"]), np.nan), "clock": 0.0}
        super().restore_state(state)

    def update(self, ds: xr.Dataset, dt: float) -> xr.Dataset:
        """Advance by ``dt`` [s] with the density (and velocities, if any) in ``ds``."""
        self.check_inputs(ds)
        if not dt > 0:
            raise ValueError("crowd_state: dt must be > 0 s")
        cfg = self.config
        rho = self.read(ds, "crowd_density").ravel()
        n = rho.size
        los = np.empty(n, np.int8)
        losq = np.empty(n, np.int8)
        classify_bands(rho, cfg.walkway_density_edges(), 0, los)
        classify_bands(rho, np.asarray(cfg.queue_los_density, float), 0, losq)
        trend = np.empty(n)
        self.clock += dt
        time = self.read(ds, "crowd_time").ravel() if "crowd_time" in ds else np.full(n, self.clock)
        density_trend(rho, time, self.prev, self.prev_t, cfg.trend_alpha, self.trend, trend)
        pres = np.full(n, np.nan)
        if "crowd_velocity_x" in ds and "crowd_velocity_y" in ds:
            crowd_pressure(rho, self.read(ds, "crowd_velocity_x").ravel(), self.read(ds, "crowd_velocity_y").ravel(),
                           cfg.pressure_alpha, self.u_mean, self.v_mean, self.var, pres)
        hz = np.empty(n)
        crowd_hazard(rho, pres, cfg.hazard_low, cfg.hazard_high, cfg.pressure_crit, cfg.pressure_min_density, hz)
        projected = np.empty(n)
        projected_density(rho, trend, cfg.trend_horizon, projected)
        v = np.empty(n)
        q = np.empty(n)
        weidmann_speed(rho, cfg.weidmann_v0, cfg.weidmann_gamma, cfg.weidmann_rho_max, v, q)
        v[np.isnan(rho)] = np.nan
        q[np.isnan(rho)] = np.nan
        arrays = {"crowd_los": los, "crowd_los_queue": losq, "crowd_trend": trend, "crowd_hazard": hz,
                  "crowd_projected": projected,
                  "walking_speed": v, "pedestrian_flow": q, "crowd_pressure": pres}
        return self.outputs_from_si({k: a.reshape(self.shape) for k, a in arrays.items()}, _coords(ds))
