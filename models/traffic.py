"""Traffic components: probe speeds, congestion levels (GB/T 33171), TPI-like index, incidents."""

from __future__ import annotations

import numpy as np
import xarray as xr

from models._component import CONGESTION_FLAGS, GRID_DIMS, Component, Reference, Var
from models.config import TrafficConfig
from models.kernels import traffic as tk

GBT33171 = Reference("GB/T 33171-2016 Specification for urban traffic performance evaluation "
                     "(城市交通运行状况评价规范), segment congestion levels by road class and speed.")
WARDROP = Reference("Wardrop, J. G. (1952). Some theoretical aspects of road traffic research. Proc. Inst. "
                    "Civ. Eng. 1(3), 325-362 (time- and space-mean speed).", "10.1680/ipeds.1952.11259")
PAYNE = Reference("Payne, H. J., Tignor, S. C. (1978). Freeway incident-detection algorithms based on "
                  "decision trees with states. Transp. Res. Rec. 682, 30-37 (California algorithm).")


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
    and the grid); NaN where no segment with data crosses the cell (SCIENCE.md 3.4).
    """
    out = np.empty(n_cells)
    tk.segment_to_cells(np.ascontiguousarray(seg, np.int64), np.ascontiguousarray(cell, np.int64),
                        np.ascontiguousarray(length_m, float), np.ascontiguousarray(seg_speed_ms, float), out)
    return out


class ProbeSpeeds(Component):
    """Space-mean speed per cell from time-sampled Beidou probe pings, smoothed in time.

    Each ping (already map-matched to a cell) stands for its sampling interval; the cell speed is
    sum(v dt) / sum(dt) (SCIENCE.md 3.4 -- not the harmonic mean, which is for spot speeds at a
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
    ``traffic_speed_ref`` (historical speed of the same time slot).
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
        Var("congestion_level", "1", GRID_DIMS, "int8", "GB/T 33171 congestion level, 0 smooth to 4 severe",
            flags=CONGESTION_FLAGS),
        Var("tpi_like", "1", GRID_DIMS, "float64", "TPI-like congestion index, 0 to 10"),
        Var("traffic_incident", "1", GRID_DIMS, "int8", "1 where a probe speed-drop incident is detected"),
    )
    references = (GBT33171,)

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
        inc = np.zeros(v.size, np.int8)
        if "traffic_speed_ref" in ds:
            tk.speed_drop_incident(v, self.read(ds, "traffic_speed_ref").ravel(), cfg.drop_ratio, cfg.drop_persist,
                                   self.count, inc)
        arrays = {"congestion_level": lvl, "tpi_like": tpi, "traffic_incident": inc}
        return self.outputs_from_si({k: a.reshape(shape) for k, a in arrays.items()}, _coords(ds))


class LoopDetectors(Component):
    """Loop detectors: space-mean speed (harmonic mean of spot speeds) and the California algorithm.

    ``detector_downstream[i]`` is the index of the detector downstream of detector i (-1: none);
    the pair (i, downstream) is tested with OCCDF, OCCRDF and DOCCTD (Payne & Tignor 1978) and a
    persistence of ``california_persist`` intervals. Occupancy as a fraction 0-1.
    """

    name = "loop_detectors"
    inputs = (
        Var("passage_detector", "1", ("passage",), "int64", "detector of each vehicle passage", valid_range=(0, 4)),
        Var("passage_speed", "km h-1", ("passage",), "float64", "spot speed of each passage", valid_range=(5, 90)),
        Var("detector_occupancy", "1", ("detector",), "float64", "detector occupancy over the interval"),
        Var("detector_downstream", "1", ("detector",), "int64", "index of the downstream detector, -1 none",
            valid_range=(-1, 4)),
    )
    outputs = (
        Var("detector_speed", "km h-1", ("detector",), "float64", "space-mean speed at the detector"),
        Var("detector_count", "1", ("detector",), "float64", "vehicle passages over the interval"),
        Var("detector_incident", "1", ("detector",), "int8", "1 where the California algorithm declares an incident"),
    )
    references = (WARDROP, PAYNE)

    def __init__(self, ds: xr.Dataset, config: TrafficConfig | None = None):
        self.check_inputs(ds, ("detector_occupancy", "detector_downstream"))
        self.config = config or TrafficConfig()
        n = ds["detector_occupancy"].size
        self.lags = [np.full(n, np.nan), np.full(n, np.nan)]  # occupancy t-1, t-2
        self.count = np.zeros(n, np.int64)

    def update(self, ds: xr.Dataset, dt: float = 0.0) -> xr.Dataset:
        """One detector interval from ``ds``; ``dt`` [s] is the interval (unused)."""
        self.check_inputs(ds)
        occ = self.read(ds, "detector_occupancy")
        dn = self.read(ds, "detector_downstream")
        n = occ.size
        v, cnt = np.empty(n), np.empty(n)
        tk.loop_speed(self.read(ds, "passage_detector"), self.read(ds, "passage_speed"), v, cnt)
        has = dn >= 0
        idx = np.where(has, dn, 0)
        occ_dn = np.where(has, occ[idx], np.nan)
        lag2_dn = np.where(has, self.lags[1][idx], np.nan)
        inc = np.empty(n, np.int8)
        t1, t2, t3 = self.config.california
        tk.california_incident(occ, occ_dn, lag2_dn, t1, t2, t3, self.config.california_persist, self.count, inc)
        self.lags = [occ.copy(), self.lags[0]]
        return self.outputs_from_si({"detector_speed": v, "detector_count": cnt, "detector_incident": inc})
