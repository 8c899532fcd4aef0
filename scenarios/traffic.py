"""Roads as capacity and queues: the scenarios' traffic until a cell transmission model arrives.

`LinkQueues` runs on the directed links of the twin's road network (`twin.district.roads.RoadNetwork`, issue 15),
as the live twin's traffic does; `RoadQueues` on the road cells of a twin without one. The physics are the same.

References: Bureau of Public Roads (1964). Traffic Assignment Manual. U.S. Department of Commerce, Urban Planning
Division, Washington D.C. (the BPR function).

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
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

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


class LinkQueues:
    """Speeds and queues on the directed links of a road network: `RoadQueues`' physics per link.

    Each link k carries a demand ``base_vc x f_k x C_k`` [veh s-1], C_k = lanes_k x ``lane_capacity_veh_h`` / 3600
    [veh s-1], f_k the demand factor of the scenario sampled on the link: the length-weighted mean of the grid's
    factor over the cells the link crosses (a scalar factor applies to every link; a link crossing no cell takes 1).
    Below capacity the link's speed is the BPR speed (BPR 1964) v_k = v_free,k / (1 + alpha (V/C)^beta) [km h-1],
    alpha 0.15, beta 4 [mem]; above it a vertical queue grows by (V - C) [veh s-1] and drains at the spare capacity,
    and the speed is L_k / (L_k / v_BPR + queue / C_k) for a link of length L_k [m].

    Closures: a link is closed when at least half its length lies in closed cells. A closed link carries nothing
    (speed NaN, its queue is dropped) and its demand takes the shortest detour (by length) over the open links from its
    start node to its end node, all or nothing (`scipy.sparse.csgraph.dijkstra`, recomputed only when the set of
    closed links changes) [design]. Inside a closed stretch (a whole road closed) a link's start node has no open way
    out, so the detour starts at the nearest node behind it, over closed links, that has one, and ends at the nearest
    node ahead of it that has an open way in (never through the link's own reverse); the closed links with the same
    two ends are one stretch, one movement, whose flow (that of its busiest link) is detoured once [design: drivers
    take the shortest way round; a through movement is not counted once per closed link]. A stretch with no detour
    (no open way round, or no open node behind or ahead) loses its flow: `unserved_veh_h` [veh h-1] now and
    `unserved_veh` [veh] since the start count it.
    """

    def __init__(self, u: np.ndarray, v: np.ndarray, length_m: np.ndarray, lanes: np.ndarray,
                 free_flow_kmh: np.ndarray, cells: tuple[np.ndarray, np.ndarray, np.ndarray],
                 config: RoadConfig | None = None) -> None:
        self.config = config or RoadConfig()
        self.u, self.v = np.asarray(u, np.int64), np.asarray(v, np.int64)
        self.n = self.u.size
        self.length = np.maximum(np.asarray(length_m, float), 0.1)  # [m]; a link of a few cm still takes time
        self.free = np.asarray(free_flow_kmh, float)  # [km h-1]
        lanes = np.clip(np.nan_to_num(np.asarray(lanes, float), nan=1.0), 1.0, None)
        self.capacity = lanes * self.config.lane_capacity_veh_h / 3600.0  # [veh s-1]
        link, cell, seg = (np.asarray(a) for a in cells)
        self.cell_link, self.cell_index, self.cell_length = link.astype(np.int64), cell.astype(np.int64), \
            seg.astype(float)
        self.in_grid = np.bincount(self.cell_link, self.cell_length, minlength=self.n)  # [m] of each link in cells
        self.queue = np.zeros(self.n)  # vehicles waiting [veh]
        self.closed = np.zeros(self.n, bool)
        self.demand = np.zeros(self.n)  # [veh s-1] after detours, last step
        self.unserved_veh_h = 0.0
        self.unserved_veh = 0.0
        self._group = np.full(self.n, -1)  # closed stretch of each closed link (-1: open)
        self._detour = csr_matrix((self.n, 0))  # links x closed stretches: 1 where the stretch's detour uses the link
        self._stranded = np.zeros(0, bool)  # closed stretches without a detour
        nodes, inverse = np.unique(np.r_[self.u, self.v], return_inverse=True)
        self._node_u, self._node_v, self.n_nodes = inverse[:self.n], inverse[self.n:], nodes.size

    @classmethod
    def from_network(cls, network, config: RoadConfig | None = None) -> LinkQueues:
        """The links of a `twin.district.roads.RoadNetwork` (its link -> cell table for demand and closures)."""
        links = network.links
        return cls(links["u"].to_numpy(np.int64), links["v"].to_numpy(np.int64), links["length_m"].to_numpy(float),
                   links["lanes"].to_numpy(float), links["free_flow_kmh"].to_numpy(float),
                   (network.cell_link, network.cell_index, network.cell_length_m), config)

    # ------------------------------------------------------------ cells -> links
    def link_factor(self, demand_factor: np.ndarray | float) -> np.ndarray:
        """The demand factor on each link [1]: the length-weighted mean over its cells of a grid (flat or (ny, nx))
        factor, or a scalar for every link."""
        f = np.asarray(demand_factor, float)
        if f.ndim == 0:
            return np.full(self.n, float(f))
        weighted = np.bincount(self.cell_link, self.cell_length * f.ravel()[self.cell_index], minlength=self.n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.in_grid > 0, weighted / self.in_grid, 1.0)

    def closed_links(self, closed_cells: np.ndarray | None) -> np.ndarray:
        """Links with at least half their length in closed cells (a grid mask, flat or (ny, nx))."""
        if closed_cells is None:
            return np.zeros(self.n, bool)
        closed = np.asarray(closed_cells, bool).ravel()[self.cell_index]
        return np.bincount(self.cell_link, self.cell_length * closed, minlength=self.n) >= 0.5 * self.length

    # ------------------------------------------------------------ detours
    def _graph(self, links: np.ndarray) -> tuple[csr_matrix, dict[tuple[int, int], int]]:
        """The node graph of ``links`` (lengths; the shortest link between two nodes is their edge) and the link of
        each edge."""
        links = links[self._node_u[links] != self._node_v[links]]
        order = links[np.lexsort((self.length[links], self._node_v[links], self._node_u[links]))]
        first = np.r_[True, (np.diff(self._node_u[order]) != 0) | (np.diff(self._node_v[order]) != 0)]
        edge = order[first]
        graph = csr_matrix((self.length[edge], (self._node_u[edge], self._node_v[edge])),
                           shape=(self.n_nodes, self.n_nodes))
        return graph, {(int(a), int(b)): int(k) for a, b, k in zip(self._node_u[edge], self._node_v[edge], edge,
                                                                    strict=True)}

    def _boundary(self, k: int, closed_graph: csr_matrix, edge_of: dict, ok: np.ndarray, backward: bool) -> int:
        """The nearest node to closed link ``k``'s start (``backward``, against the direction of travel) or end over
        closed links (not ``k``'s own reverse) where ``ok`` (a node with an open way out, or in); -1 if none."""
        a, b = int(self._node_u[k]), int(self._node_v[k])
        start = a if backward else b
        if ok[start]:
            return start
        g = closed_graph.T.tocsr() if backward else closed_graph.copy()
        rev = edge_of.get((b, a))
        if rev is not None:  # no U-turn through the link's own reverse: drop that edge
            g[start, b if backward else a] = 0.0
            g.eliminate_zeros()
        dist = dijkstra(g, directed=True, indices=start)
        dist = np.where(ok, dist, np.inf)
        best = int(np.argmin(dist))
        return best if np.isfinite(dist[best]) else -1

    def _route(self, closed: np.ndarray) -> None:
        """Detours of the closed links over the open ones (see the class docstring)."""
        self.closed = closed
        todo = np.flatnonzero(closed)
        self._group = np.full(self.n, -1)
        if todo.size == 0:
            self._detour, self._stranded = csr_matrix((self.n, 0)), np.zeros(0, bool)
            return
        open_links = np.flatnonzero(~closed)
        open_out = np.bincount(self._node_u[open_links], minlength=self.n_nodes) > 0
        open_in = np.bincount(self._node_v[open_links], minlength=self.n_nodes) > 0
        closed_graph, closed_edge = self._graph(todo)
        pairs: dict[tuple[int, int], int] = {}
        for k in todo:  # each closed link's stretch: from where its traffic leaves the open roads to where it rejoins
            entry = self._boundary(int(k), closed_graph, closed_edge, open_out, backward=True)
            exit_ = self._boundary(int(k), closed_graph, closed_edge, open_in, backward=False)
            self._group[k] = pairs.setdefault((entry, exit_), len(pairs))
        graph, edge_of = self._graph(open_links)
        ends = list(pairs)
        sources = sorted({a for a, b in ends if a >= 0 and b >= 0 and a != b})
        dist, pred = dijkstra(graph, directed=True, indices=sources, return_predecessors=True) if sources else \
            (np.zeros((0, self.n_nodes)), None)
        row_of = {a: i for i, a in enumerate(sources)}
        rows, cols = [], []
        self._stranded = np.zeros(len(ends), bool)
        for g, (a, b) in enumerate(ends):
            if a < 0 or b < 0 or a == b or not np.isfinite(dist[row_of[a], b]):
                self._stranded[g] = True
                continue
            node = b
            while node != a:  # walk the path back from the exit node
                prev = int(pred[row_of[a], node])
                rows.append(edge_of[(prev, node)])
                cols.append(g)
                node = prev
        self._detour = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(self.n, len(ends)))

    def detour_of(self, link: int) -> np.ndarray:
        """The open links that carry closed link ``link``'s demand now (empty: open, or no detour)."""
        g = int(self._group[int(link)])
        return np.zeros(0, np.int64) if g < 0 else np.flatnonzero(self._detour[:, g].toarray().ravel())

    # ------------------------------------------------------------ one step
    def step(self, dt: float, demand_factor: np.ndarray | float, closed: np.ndarray | None = None) -> np.ndarray:
        """Advance ``dt`` [s] under the demand factor [1] and the closed cells; returns the links' speeds [km h-1]
        (NaN on closed links)."""
        shut = self.closed_links(closed)
        if not np.array_equal(shut, self.closed):
            self._route(shut)
        base = self.config.base_vc * self.link_factor(demand_factor) * self.capacity  # [veh s-1]
        moved = np.zeros(self._detour.shape[1])  # per closed stretch, the flow of its busiest link [veh s-1]
        np.maximum.at(moved, self._group[shut], base[shut])
        demand = np.where(shut, 0.0, base + self._detour @ moved)
        lost = float(moved[self._stranded].sum())
        self.unserved_veh_h = lost * 3600.0
        self.unserved_veh += lost * dt
        self.demand = demand
        self.queue = np.where(shut, 0.0, np.maximum(0.0, self.queue + (demand - self.capacity) * dt))
        vc = np.minimum(demand / self.capacity, 1.0)
        bpr_ms = self.free / (1.0 + BPR_ALPHA * vc ** BPR_BETA) / 3.6
        crossing_s = self.length / bpr_ms + self.queue / self.capacity  # BPR travel time plus the queue's discharge
        return np.where(shut, np.nan, self.length / crossing_s * 3.6)

    @property
    def vc(self) -> np.ndarray:
        """Demand over capacity of each link in the last step [1] (0 on closed links)."""
        return self.demand / self.capacity

    @property
    def queued_vehicles(self) -> float:
        """Vehicles in all queues [veh]."""
        return float(self.queue.sum())
