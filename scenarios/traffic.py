"""Road cells as capacity and queues: the scenarios' traffic until a cell transmission model arrives.

Each road cell carries a demand ``x0 x demand_factor(t)`` as a share of its capacity (volume /
capacity, V/C). Below capacity the speed follows the Bureau of Public Roads link-performance function
(BPR 1964) v = v_free / (1 + alpha (V/C)^beta), alpha 0.15, beta 4 [mem]; above it a vertical queue
grows by (V - C) per second and drains at the spare capacity when demand falls; a vehicle then needs
the BPR time to cross the cell plus the queue's discharge time (queue / C), so the cell's speed is
L / (L / v_BPR + queue / C) for a cell of length L, and a standing queue keeps it low until it has
drained. A closed road carries nothing (speed no data); its demand moves to the other
road cells in proportion to their capacity (the drivers take other routes) [design].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BPR_ALPHA = 0.15
BPR_BETA = 4.0


@dataclass(frozen=True)
class RoadConfig:
    """Evening base demand as a share of capacity [1] and the capacity per lane [veh h-1] (HCM urban
    arterial saturation flow ~1,800 veh/h/lane x green share 0.5 [mem])."""

    base_vc: float = 0.6
    lane_capacity_veh_h: float = 900.0


class RoadQueues:
    """Speeds and queues on the road cells of a grid (``free_flow_speed`` [km h-1], ``road_class``)."""

    def __init__(self, free_flow_kmh: np.ndarray, road_class: np.ndarray, cell_size_m: float,
                 config: RoadConfig | None = None) -> None:
        self.config, self.cell_size = config or RoadConfig(), cell_size_m
        self.road = (np.asarray(road_class) > 0) & np.isfinite(free_flow_kmh)
        self.free = np.where(self.road, free_flow_kmh, np.nan)
        lanes = np.select([road_class == 1, road_class == 2, road_class == 3], [3.0, 3.0, 2.0], 1.0)
        self.capacity = np.where(self.road, lanes * self.config.lane_capacity_veh_h / 3600.0, 0.0)  # veh s-1
        self.queue = np.zeros(self.road.shape)  # vehicles waiting [veh]

    def step(self, dt: float, demand_factor: np.ndarray | float, closed: np.ndarray | None = None) -> np.ndarray:
        """Advance ``dt`` [s]; returns the speed [km h-1] (NaN off-road and on closed cells)."""
        closed = np.zeros(self.road.shape, bool) if closed is None else np.asarray(closed, bool)
        open_road = self.road & ~closed
        demand = self.config.base_vc * np.broadcast_to(demand_factor, self.road.shape) * self.capacity
        moved = float(demand[self.road & closed].sum())
        spare = float(self.capacity[open_road].sum())
        if moved > 0 and spare > 0:  # the closed cells' traffic takes the other roads
            demand = np.where(open_road, demand + moved * self.capacity / spare, 0.0)
        demand = np.where(open_road, demand, 0.0)
        self.queue = np.where(open_road, np.maximum(0.0, self.queue + (demand - self.capacity) * dt), 0.0)
        cap = np.where(open_road, self.capacity, np.nan)
        vc = np.minimum(demand / np.where(open_road, cap, 1.0), 1.0)
        bpr_ms = self.free / (1.0 + BPR_ALPHA * vc ** BPR_BETA) / 3.6
        crossing_s = self.cell_size / bpr_ms + self.queue / cap  # BPR travel time plus the queue's discharge
        return np.where(open_road, self.cell_size / crossing_s * 3.6, np.nan)

    @property
    def queued_vehicles(self) -> float:
        """Vehicles in all queues [veh]."""
        return float(self.queue.sum())
