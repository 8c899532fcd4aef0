"""Fixed sensors: crowd counters, rain gauges, water-depth gauges and loop detectors (SenML).

Crowd
    The hourly shape of a real New Year's Eve pedestrian count (Auckland waterfront, 107 Quay Street,
    2023-12-31 06:00 to 2024-01-01 05:59, CC BY 4.0, ``data/sensors/PROVENANCE.md``), normalised to its
    maximum and linearly interpolated between hour centres, is placed so that its maximum falls at
    ``peak_at`` and squeezed into ``span_s`` (86 400 s = real time). A counter reports
    count = peak_density x walkable area x shape x weight, weight 1 on Chen Yi Square counters and 0.7-0.9
    elsewhere, with 3 % noise: the busiest counter reaches ``peak_density`` [person m-2] at the peak. The
    walkable area is the one the twin divides the count by, so the twin reads the density meant
    (`Sensors`, `twin_walkable_m2`).
Rain
    A Chicago design storm (Keifer & Chu 1957; peak ratio r = 0.4) on the Shanghai intensity formula
    ``models.design_storm.shanghai_storm_intensity`` (docs/science/flood.md 2.2): the cumulative depth is
    exact, so each report is the mean rate over its interval and the mean over the storm equals the formula's value.
Water
    A linear reservoir at each underpass: depth rises at (rain - drainage) x catchment ratio and falls
    at the same ratio when the rain is below the drainage capacity (36.5 mm/h, the 1-yr 60-min rate).
Traffic
    Greenshields: speed = free speed x congestion x 0.92 (+-3 %), density k = kj (1 - v/vf),
    flow = v k lanes, occupancy = k x 6 m effective vehicle length (kj = 150 veh/km/lane, 3 lanes).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape

from ingest.batch import Batch
from ingest.decoders.senml import encode_senml
from ingest.registry import Device, Registry
from models.design_storm import chicago_depth_mm
from twin.district.cim import DEFAULT_DRAINAGE_MM_H
from twin.district.geo import to_projected
from twin.district.sources import data_dir
from twin.live.query import counter_walkable_m2 as twin_walkable_m2

PROFILE_FILE = "sensors/auckland_nye2023_107_quay_street.csv"
CHICAGO_R = 0.4
"""Peak position of the Chicago hyetograph as a share of the duration (Shanghai practice 0.4)."""
JAM_DENSITY = 150.0
"""Jam density per lane [veh km-1]."""
LANES = 3
VEHICLE_LENGTH_M = 6.0
"""Effective vehicle length (car plus loop) for occupancy [m]."""


def crowd_shape(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hours from the profile maximum (centre of each hour) and the normalised counts (max 1)."""
    path = path or data_dir() / PROFILE_FILE
    with open(path, encoding="utf-8") as f:
        counts = np.array([float(r["count"]) for r in csv.DictReader(f)])
    hours = np.arange(len(counts)) + 0.5
    shape_ = counts / counts.max()
    return hours - hours[int(np.argmax(counts))], shape_


def storm_depth_mm(minutes: float, return_period_yr: float, duration_min: float) -> float:
    """Cumulative depth of the Chicago design storm (peak at ``CHICAGO_R``) ``minutes`` after its start [mm]."""
    return chicago_depth_mm(minutes, return_period_yr, duration_min, CHICAGO_R)


@dataclass
class Storm:
    """A design storm: return period [yr], duration [min], start [unix s]."""

    return_period_yr: float
    duration_min: float
    start: float

    def depth(self, t: float) -> float:
        """Depth fallen by time ``t`` [mm]."""
        return storm_depth_mm((t - self.start) / 60.0, self.return_period_yr, self.duration_min)

    def rate(self, t0: float, t1: float) -> float:
        """Mean intensity over [t0, t1] [mm h-1]."""
        return 0.0 if t1 <= t0 else (self.depth(t1) - self.depth(t0)) / (t1 - t0) * 3600.0


def _area_m2(geometry: dict) -> float:
    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_projected(xy[:, 0], xy[:, 1]))

    return float(shapely.transform(shape(geometry), project).area)


def counter_area_m2(device: Device, walkable_m2: Mapping[str, float] | None = None) -> float:
    """The area a crowd counter counts people over [m2]: ``walkable_m2[device.id]`` (the twin's walkable area,
    `twin_walkable_m2`), else the registry's ``walkable_area_m2``, else the area of its coverage polygon."""
    for value in ((walkable_m2 or {}).get(device.id), device.properties.get("walkable_area_m2")):
        if value is not None and math.isfinite(float(value)) and float(value) > 0:
            return float(value)
    return _area_m2(device.geometry)


class Sensors:
    """All fixed sensors of a registry, reporting every ``report_s`` seconds.

    Crowd counters count people per walkable m2 the way the twin divides: counter ``d`` reports
    count = ``crowd_peak`` x A x shape x weight with A = `counter_area_m2` (``walkable_m2[d.id]``, the
    walkable area the twin divides its count by, best computed with `twin_walkable_m2` from the twin the
    feed goes to; else the registry's ``walkable_area_m2``, which the twin also uses; else the area of the
    counter's coverage polygon, which overstates the density the twin reads wherever the polygon holds
    buildings or water). The twin's density at the counter is then ``crowd_peak`` x shape x weight.
    """

    def __init__(self, registry: Registry, rng: np.random.Generator, t0: float, *, report_s: float = 60.0,
                 crowd_peak: float = 3.0, crowd_peak_at: float | None = None, crowd_span_s: float = 86400.0,
                 storm: Storm | None = None, drainage_mm_h: float = DEFAULT_DRAINAGE_MM_H,
                 congestion: dict[str, float] | None = None,
                 free_speed_kmh: dict[str, float] | None = None,
                 walkable_m2: Mapping[str, float] | None = None) -> None:
        self.rng, self.report_s, self.storm = rng, report_s, storm
        self.crowd_peak = crowd_peak
        self.crowd_peak_at = t0 + 3 * 3600.0 if crowd_peak_at is None else crowd_peak_at
        self.crowd_span_s = crowd_span_s
        self.drainage = drainage_mm_h
        self.congestion = congestion if congestion is not None else {}
        self.free_speed = free_speed_kmh or {}
        self.hours, self.shape = crowd_shape()
        self.crowd = [(d, counter_area_m2(d, walkable_m2), 1.0 if "Chen Yi" in d.name
                       else float(rng.uniform(0.7, 0.9))) for d in registry.of_kind("crowd")]
        """(counter, the walkable area it counts over [m2], its weight [1])."""
        self.rain = registry.of_kind("rain")
        self.water = [(d, float(rng.uniform(8.0, 20.0))) for d in registry.of_kind("water")]
        self.depth = {d.id: 0.0 for d, _ in self.water}
        self.loops = registry.of_kind("traffic")
        self.t_last = t0
        self.next_report = t0 + report_s

    def crowd_density(self, t: float) -> dict[str, float]:
        """The density each counter means at ``t``, noise aside: ``crowd_peak`` x shape x weight [person m-2]."""
        f = self.crowd_factor(t)
        return {d.id: self.crowd_peak * f * w for d, _, w in self.crowd}

    def crowd_factor(self, t: float) -> float:
        """The normalised New Year's Eve shape at ``t`` (1 at ``crowd_peak_at``) [1]."""
        h = (t - self.crowd_peak_at) / self.crowd_span_s * 24.0
        return float(np.interp(h, self.hours, self.shape, left=self.shape[0], right=self.shape[-1]))

    def rain_rate(self, t0: float, t1: float) -> float:
        """Mean rain intensity over [t0, t1] [mm h-1]."""
        return 0.0 if self.storm is None else self.storm.rate(t0, t1)

    def _water(self, t0: float, t1: float) -> None:
        excess = self.rain_rate(t0, t1) - self.drainage  # [mm h-1]
        for d, ratio in self.water:
            self.depth[d.id] = max(0.0, self.depth[d.id] + excess / 1000.0 / 3600.0 * ratio * (t1 - t0))

    def _senml(self, topic: str, device: str, t: float, names: list[str], values: list[float]) -> tuple[str, bytes]:
        b = Batch.build(len(names), device=device, t=[t] * len(names), quantity=names, value=values)
        return topic, encode_senml(b)

    def step(self, t: float, dt: float, prefix: str) -> list[tuple[str, bytes]]:
        """Advance to ``t`` and return the reports due."""
        self._water(t - dt, t)
        if t + 1e-9 < self.next_report:
            return []
        t_prev, self.next_report = self.t_last, self.next_report + self.report_s
        self.t_last = t
        ts = round(t, 3)
        out = []
        f = self.crowd_factor(t)
        for d, area, w in self.crowd:
            n = max(0, round(self.crowd_peak * area * f * w * float(self.rng.normal(1.0, 0.03))))
            out.append(self._senml(f"{prefix}sensors/crowd/{d.id}", d.id, ts, ["count"], [float(n)]))
        rate = round(self.rain_rate(t_prev, t), 3) if t > t_prev else 0.0
        for d in self.rain:
            out.append(self._senml(f"{prefix}sensors/rain/{d.id}", d.id, ts, ["rain"], [rate]))
        for d, _ in self.water:
            out.append(self._senml(f"{prefix}sensors/water/{d.id}", d.id, ts, ["depth"],
                                   [round(min(self.depth[d.id], 19.0), 4)]))
        for d in self.loops:
            out.append(self._senml(f"{prefix}sensors/traffic/{d.id}", d.id, ts, ["speed", "flow", "occ"],
                                   self._loop(d)))
        return out

    def _loop(self, d: Device) -> list[float]:
        road = str(d.properties.get("road", ""))
        vf = self.free_speed.get(road, 50.0)
        c = self.congestion.get(road, 1.0)
        v = max(1.0, vf * c * 0.92 * float(self.rng.normal(1.0, 0.03)))
        k = JAM_DENSITY * max(0.0, 1.0 - v / vf)
        flow = v * k * LANES
        occ = min(100.0, k * VEHICLE_LENGTH_M / 10.0)
        return [round(v, 1), round(flow), round(occ, 1)]


def storm_mean(storm: Storm) -> float:
    """Mean intensity over the whole storm [mm h-1] (equals ``shanghai_storm_intensity``)."""
    return storm.rate(storm.start, storm.start + storm.duration_min * 60.0)


__all__ = ["Sensors", "Storm", "counter_area_m2", "crowd_shape", "storm_depth_mm", "storm_mean",
           "twin_walkable_m2"]
