"""Traffic components: probe speeds, loop detectors, congestion levels (GB/T 33171), TPI-like index, incidents."""

from __future__ import annotations

import numpy as np
import xarray as xr

from models._component import GRID_DIMS, Component, Reference, Var
from models.config import TrafficConfig
from models.kernels import traffic as tk

GBT33171 = Reference("GB/T 33171-2016 Specification for urban traffic performance evaluation "
                     "(城市交通运行状况评价规范), segment congestion levels by road class and speed.")
WARDROP = Reference("Wardrop, J. G. (1952). Some theoretical aspects of road traffic research. Proc. Inst. "
                    "Civ. Eng. 1(3), 325-362 (time- and space-mean speed).", "10.1680/ipeds.1952.11259")
PAYNE = Reference("Payne, H. J., Tignor, S. C. (1978). Freeway incident-detection algorithms based on "
                  "decision trees with states. Transp. Res. Rec. 682, 30-37 (California algorithm).")

CONGESTION_DOC = "GB/T 33171 congestion level, 0 smooth to 4 severe, -1 no road or no data"
INCIDENT_DOC = "traffic incident in the cell: 1 declared, 0 tested and none, -1 not tested"


def _coords(ds: xr.Dataset) -> dict:
    return {d: ds.coords[d] for d in GRID_DIMS if d in ds.coords}


def segment_speeds(seg_idx: np.ndarray, speed_ms: np.ndarray, interval_s: np.ndarray, n_segments: int,
                   config: TrafficConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Space-mean probe speed [m s-1] and ping count per road segment (minimum-sample rule applied)."""
    cfg = config or TrafficConfig()
    v, n = np.empty(n_segments), np.empty(n_segments)
    tk.probe_speed(np.ascontiguousarray(seg_idx, np.int64), np.ascontiguousarray(speed_ms, float),
                   np.ascontiguousarray(interval_s, float), cfg.min_samples, cfg.min_probe_seconds, v, n)
    return v, n


def cell_speeds_from_segments(seg: np.ndarray, cell: np.ndarray, length_m: np.ndarray, seg_speed_ms: np.ndarray,
                              n_cells: int) -> np.ndarray:
    """Cell speed [m s-1] as the length-weighted mean of the segment speeds crossing each cell.

    ``seg``, ``cell``, ``length_m`` [m] form the sparse segment x cell table (from the road network
    and the grid); NaN where no segment with data crosses the cell (docs/science/traffic.md 3.4).
    """
    out = np.empty(n_cells)
    tk.segment_to_cells(np.ascontiguousarray(seg, np.int64), np.ascontiguousarray(cell, np.int64),
                        np.ascontiguousarray(length_m, float), np.ascontiguousarray(seg_speed_ms, float), out)
    return out


class ProbeSpeeds(Component):
    """Space-mean speed per cell from time-sampled Beidou probe pings, smoothed in time.

    Each ping (already map-matched to a cell) stands for its sampling interval; the cell speed is
    sum(v dt) / sum(dt) (docs/science/traffic.md 3.4 -- not the harmonic mean, which is for spot speeds at a
    point). Cells below ``min_samples`` pings or ``min_probe_seconds`` get NaN (no data) and keep
    their smoothing state; others are EWMA-smoothed with ``ewma_alpha``.
    """

    name = "probe_speeds"
    inputs = (
        Var("ping_cell", "1", ("ping",), "int64", "flat cell index of each probe ping (-1 unmatched)",
            valid_range=(0, 3)),
        Var("ping_speed", "km h-1", ("ping",), "float64", "speed reported by each ping", valid_range=(0, 80)),
        Var("ping_interval", "s", ("ping",), "float64", "sampling interval each ping stands for",
            valid_range=(10, 30)),
    )
    outputs = (
        Var("traffic_speed", "km h-1", GRID_DIMS, "float64", "space-mean traffic speed"),
        Var("traffic_samples", "1", GRID_DIMS, "float64", "probe samples behind the traffic speed"),
    )
    references = (WARDROP,)
    state_vars = ("state",)

    def __init__(self, ds: xr.Dataset, config: TrafficConfig | None = None, shape: tuple[int, int] | None = None):
        self.config = config or TrafficConfig()
        if shape is None:
            if "y" not in ds.sizes or "x" not in ds.sizes:
                raise ValueError("probe_speeds: give the grid shape (dataset dims y, x or shape=)")
            shape = (ds.sizes["y"], ds.sizes["x"])
        self.shape = tuple(shape)
        self.coords = _coords(ds)
        self.state = np.full(int(np.prod(shape)), np.nan)

    def update(self, ds: xr.Dataset, dt: float = 0.0) -> xr.Dataset:
        """Speeds from this bin's pings in ``ds``; ``dt`` [s] is the bin length (unused)."""
        self.check_inputs(ds)
        cell = self.read(ds, "ping_cell")
        if cell.size and cell.max() >= self.state.size:
            raise ValueError("probe_speeds: ping_cell outside the grid")
        v, n = segment_speeds(cell, self.read(ds, "ping_speed"), self.read(ds, "ping_interval"), self.state.size,
                              self.config)
        out = np.empty_like(v)
        tk.ewma_update(v, self.state, self.config.ewma_alpha, out)
        return self.outputs_from_si({"traffic_speed": out.reshape(self.shape),
                                     "traffic_samples": n.reshape(self.shape)}, self.coords)


class Congestion(Component):
    """GB/T 33171-2016 congestion level by road class, a 0-10 "TPI-like" index, probe incidents.

    Level codes: 0 smooth, 1 basically smooth, 2 light, 3 moderate, 4 severe, -1 no road or no
    data. The index is labelled TPI-like: its breakpoints follow the Beijing TPI bands of extra
    travel time, not the (not yet obtained) annex of the standard. ``network_tpi`` holds the
    road-length (cell-count) weighted mean after each update. The speed-drop incident test needs
    ``traffic_speed_ref`` (historical speed of the same time slot); ``traffic_incident`` is -1 (not
    tested) on cells without a road, a speed or a reference speed, so a missing profile never reads
    as "no incident".
    """

    name = "congestion"
    inputs = (
        Var("traffic_speed", "km h-1", GRID_DIMS, "float64", "space-mean traffic speed", valid_range=(0, 90)),
        Var("road_class", "1", GRID_DIMS, "int8", "highest road class in the cell", valid_range=(0, 4)),
        Var("free_flow_speed", "km h-1", GRID_DIMS, "float64", "free-flow speed of the highest road class in the cell",
            valid_range=(30, 90)),
        Var("traffic_speed_ref", "km h-1", GRID_DIMS, "float64", "historical speed of the same time slot",
            optional=True, valid_range=(30, 90)),
    )
    outputs = (
        Var("congestion_level", "1", GRID_DIMS, "int8", CONGESTION_DOC),
        Var("tpi_like", "1", GRID_DIMS, "float64", "TPI-like congestion index, 0 to 10"),
        Var("traffic_incident", "1", GRID_DIMS, "int8", INCIDENT_DOC),
    )
    references = (GBT33171,)
    state_vars = ("count", "network_tpi")

    def __init__(self, ds: xr.Dataset, config: TrafficConfig | None = None):
        self.check_inputs(ds, ("road_class", "free_flow_speed"))
        self.config = config or TrafficConfig()
        self.count = np.zeros(ds["road_class"].size, np.int64)
        self.network_tpi = float("nan")

    def update(self, ds: xr.Dataset, dt: float = 0.0) -> xr.Dataset:
        """Classify the speeds in ``ds``; ``dt`` [s] is unused."""
        self.check_inputs(ds)
        cfg = self.config
        v = self.read(ds, "traffic_speed")
        shape = v.shape
        v = v.ravel()
        cls = self.read(ds, "road_class").ravel()
        vff = self.read(ds, "free_flow_speed").ravel()
        lvl = np.empty(v.size, np.int8)
        tk.congestion_level(v, cls, cfg.gbt_edges_ms(), lvl)
        tpi = np.empty(v.size)
        weight = (cls > 0).astype(float)
        self.network_tpi = tk.tpi_like(np.where(cls > 0, v, np.nan), vff, weight, np.asarray(cfg.tpi_breaks), tpi)
        inc = np.full(v.size, -1, np.int8)
        if "traffic_speed_ref" in ds:
            ref = self.read(ds, "traffic_speed_ref").ravel()
            drop = np.empty(v.size, np.int8)
            tk.speed_drop_incident(v, ref, cfg.drop_ratio, cfg.drop_persist, self.count, drop)
            inc = np.where((cls > 0) & np.isfinite(v) & (ref > 0), drop, inc).astype(np.int8)
        arrays = {"congestion_level": lvl, "tpi_like": tpi, "traffic_incident": inc}
        return self.outputs_from_si({k: a.reshape(shape) for k, a in arrays.items()}, _coords(ds))


class LoopDetectors(Component):
    """Loop detectors on the grid: their interval speed, flow and occupancy per cell, and the California algorithm.

    Each detector reports per interval (the Bund's: 1-min aggregates) a speed, a flow and an
    occupancy; NaN is no (fresh) reading. ``detector_cell`` places it in a cell (-1: outside the
    grid, ignored). Per cell: ``loop_speed`` the harmonic mean of its detectors' speeds (the
    space-mean speed of equal flows, Wardrop 1952; one detector: its speed as reported),
    ``traffic_flow`` the sum of their flows, ``traffic_occupancy`` the mean of their occupancies;
    NaN where no detector has a reading.

    California algorithm: ``detector_downstream[i]`` is the index of the detector downstream of
    detector i (-1: none); the pair (i, downstream) is tested with OCCDF, OCCRDF and DOCCTD (Payne &
    Tignor 1978) on occupancy as a fraction, with a persistence of ``california_persist`` intervals.
    An interval is a new reading: with ``detector_time`` the test advances only for detectors whose
    occupancy reading is newer than the one last tested (a tick shorter than the detector interval
    sees the same reading again); without it every update is one interval. ``traffic_incident`` is
    1 at the upstream detector's cell while an incident is declared, 0 where a pair was tested and
    none found, -1 where nothing was tested (no pair, no occupancy).
    """

    name = "loop_detectors"
    inputs = (
        Var("detector_cell", "1", ("detector",), "int64", "flat cell index of each detector, -1 outside the grid",
            valid_range=(-1, 41)),
        Var("detector_speed", "km h-1", ("detector",), "float64", "speed reported by each detector, NaN none",
            valid_range=(0, 90)),
        Var("detector_flow", "h-1", ("detector",), "float64", "vehicles per hour reported by each detector, NaN none",
            valid_range=(0, 2000)),
        Var("detector_occupancy", "%", ("detector",), "float64",
            "share of time a vehicle was over each detector, NaN none", valid_range=(0, 100)),
        Var("detector_downstream", "1", ("detector",), "int64", "index of the downstream detector, -1 none",
            optional=True, valid_range=(-1, 4)),
        Var("detector_time", "s", ("detector",), "float64", "time of each detector's occupancy reading (unix)",
            optional=True, valid_range=(0, 1e9)),
    )
    outputs = (
        Var("loop_speed", "km h-1", GRID_DIMS, "float64", "space-mean speed at the cell's loop detectors"),
        Var("traffic_flow", "h-1", GRID_DIMS, "float64", "vehicles per hour over the cell's loop detectors"),
        Var("traffic_occupancy", "%", GRID_DIMS, "float64",
            "share of time a vehicle is over the cell's loop detectors"),
        Var("traffic_incident", "1", GRID_DIMS, "int8", INCIDENT_DOC),
    )
    references = (WARDROP, PAYNE)
    state_vars = ("lags", "count", "flag", "last_t")

    def __init__(self, ds: xr.Dataset, config: TrafficConfig | None = None, shape: tuple[int, int] | None = None):
        self.check_inputs(ds, ("detector_cell",))
        self.config = config or TrafficConfig()
        if shape is None:
            if "y" not in ds.sizes or "x" not in ds.sizes:
                raise ValueError("loop_detectors: give the grid shape (dataset dims y, x or shape=)")
            shape = (ds.sizes["y"], ds.sizes["x"])
        self.shape = tuple(shape)
        self.coords = _coords(ds)
        n = ds["detector_cell"].size
        self.lags = [np.full(n, np.nan), np.full(n, np.nan)]  # occupancy [1] one and two intervals back
        self.count = np.zeros(n, np.int64)
        self.flag = np.zeros(n, np.int8)
        self.last_t = np.full(n, -np.inf)

    def update(self, ds: xr.Dataset, dt: float = 0.0) -> xr.Dataset:
        """The detector readings in ``ds`` on the grid; ``dt`` [s] is unused."""
        self.check_inputs(ds)
        n_cells = int(np.prod(self.shape))
        cell = self.read(ds, "detector_cell")
        if cell.size != self.count.size:
            raise ValueError("loop_detectors: the number of detectors changed")
        if cell.size and cell.max() >= n_cells:
            raise ValueError("loop_detectors: detector_cell outside the grid")
        inside = cell >= 0
        # in the declared units (km h-1, h-1, %), not SI: a lone detector's reading reaches its cell unchanged
        speed = self.read(ds, "detector_speed", si=False)
        flow = self.read(ds, "detector_flow", si=False)
        occ_pct = self.read(ds, "detector_occupancy", si=False)
        out = {"loop_speed": _per_cell(cell, speed, inside & (speed >= 0), n_cells, "harmonic"),
               "traffic_flow": _per_cell(cell, flow, inside & np.isfinite(flow), n_cells, "sum"),
               "traffic_occupancy": _per_cell(cell, occ_pct, inside & np.isfinite(occ_pct), n_cells, "mean")}
        tested = self._california(ds, self.read(ds, "detector_occupancy"))  # fraction [1]
        inc = np.full(n_cells, -1, np.int8)
        use = inside & (tested >= 0)
        np.maximum.at(inc, cell[use], tested[use])
        out["traffic_incident"] = inc
        data = {k: xr.Variable(GRID_DIMS, a.reshape(self.shape).astype(self.output_var(k).dtype),
                               attrs=self.output_var(k).attrs()) for k, a in out.items()}
        return xr.Dataset(data, coords=self.coords)

    def _california(self, ds: xr.Dataset, occ: np.ndarray) -> np.ndarray:
        """Incident flag per detector: 1 declared, 0 tested and none, -1 not tested; advances the state."""
        n = occ.size
        dn = self.read(ds, "detector_downstream") if "detector_downstream" in ds else np.full(n, -1, np.int64)
        new = (self.read(ds, "detector_time") > self.last_t) if "detector_time" in ds else np.ones(n, bool)
        has = dn >= 0
        idx = np.where(has, dn, 0)
        occ_dn = np.where(has, occ[idx], np.nan)
        lag2_dn = np.where(has, self.lags[1][idx], np.nan)
        count, inc = self.count.copy(), np.empty(n, np.int8)
        t1, t2, t3 = self.config.california
        tk.california_incident(occ, occ_dn, lag2_dn, t1, t2, t3, self.config.california_persist, count, inc)
        self.count = np.where(new, count, self.count)
        self.flag = np.where(new, inc, self.flag).astype(np.int8)
        self.lags = [np.where(new, occ, self.lags[0]), np.where(new, self.lags[0], self.lags[1])]
        if "detector_time" in ds:
            self.last_t = np.where(new, self.read(ds, "detector_time"), self.last_t)
        return np.where(has & np.isfinite(occ) & np.isfinite(occ_dn), self.flag, -1).astype(np.int8)


def _per_cell(cell: np.ndarray, value: np.ndarray, use: np.ndarray, n_cells: int, how: str) -> np.ndarray:
    """``how`` (sum, mean or harmonic) of ``value[use]`` per cell; a lone value unchanged, NaN where a cell has none.

    The harmonic mean of values >= 0 is 0 when one of them is 0 (a stopped detector).
    """
    out = np.full(n_cells, np.nan)
    if not use.any():
        return out
    cells, inv = np.unique(cell[use], return_inverse=True)
    v = value[use]
    n = np.bincount(inv, minlength=cells.size)
    total = np.bincount(inv, weights=v, minlength=cells.size)
    if how == "sum":
        out[cells] = total
    elif how == "mean":
        out[cells] = np.where(n == 1, total, total / n)
    else:
        with np.errstate(divide="ignore"):
            inv_sum = np.bincount(inv, weights=1.0 / v, minlength=cells.size)
        out[cells] = np.where(n == 1, total, n / inv_sum)
    return out
