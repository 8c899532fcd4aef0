"""CrowdFlow: macroscopic pedestrian flow toward exits and gathering places, for what-if scenarios."""

from __future__ import annotations

import logging
import math

import numpy as np
import xarray as xr
from scipy import ndimage

from models._component import GRID_DIMS, Component, Reference, Var
from models.config import CrowdFlowConfig
from models.crowd import WEIDMANN
from models.kernels import crowdflow as ck

log = logging.getLogger(__name__)

ZHAO = Reference("Zhao, H. (2005). A fast sweeping method for Eikonal equations. Math. Comp. 74, 603-627.",
                 "10.1090/S0025-5718-04-01678-3")
TSITSIKLIS = Reference("Tsitsiklis, J. N. (1995). Efficient algorithms for globally optimal trajectories. "
                       "IEEE Trans. Automatic Control 40, 1528-1538 (8-neighbour semi-Lagrangian update).",
                       "10.1109/9.412624")
HUGHES = Reference("Hughes, R. L. (2002). A continuum theory for the flow of pedestrians. Transp. Res. B 36, "
                   "507-535 (potential = travel time at the local density-dependent speed).",
                   "10.1016/S0191-2615(01)00015-7")
DAGANZO = Reference("Daganzo, C. F. (1994). The cell transmission model: a dynamic representation of highway "
                    "traffic consistent with the hydrodynamic theory. Transp. Res. B 28, 269-287 "
                    "(sending and receiving functions).", "10.1016/0191-2615(94)90002-7")
LEBACQUE = Reference("Lebacque, J. P. (1996). The Godunov scheme and what it means for first order traffic flow "
                     "models. Proc. 13th ISTTT, Lyon, 647-677 (demand and supply of a general fundamental "
                     "diagram).")

_BITS = ((1, 0, 1), (2, 0, -1), (4, 1, 0), (8, -1, 0))
"""Move bits and their (di, dj): 1 -> +j, 2 -> -j, 4 -> +i, 8 -> -i (models.kernels.crowdflow)."""


class CrowdFlow(Component):
    """Macroscopic crowd flow on the walkable cells: continuity, Weidmann speed, potential routing.

    State: people per cell N [person]; density rho = N / walkable_area. A cell is a wall where its
    walkable area is below ``min_walkable_area``, its walking width (area / dx, or its ``passage_width``) below
    ``min_passage_width`` (0.6 m, one person's shoulders) or ``building_fraction >= wall_fraction``; closed
    cells (:meth:`set_closed`) take nobody in (people already in them walk out). Grid edges are
    closed. Everything else is documented on the kernels in :mod:`models.kernels.crowdflow`:

    * speed: Weidmann (1993) v(rho) = v0 [1 - exp(-gamma (1/rho - 1/rho_max))], v0 1.34 m/s,
      gamma 1.913 p/m2, rho_max 5.4 p/m2 (:class:`~models.config.CrowdFlowConfig`); its maximum
      specific flow J_max = max rho v(rho) = 1.2249 p/m/s at rho_c = 1.7507 p/m2 is computed
      (:func:`~models.kernels.crowdflow.weidmann_capacity`), not assumed;
    * direction: down the travel time T to the destinations, |grad T| = 1 / v, by fast sweeping
      (Zhao 2005) with Tsitsiklis' 8-neighbour update. ``routing="density"`` (default) uses the
      local speed max(v(rho), min_speed), so people detour round queues (Hughes 2002), and recomputes
      T every ``potential_every`` sub-steps; ``routing="free"`` uses v0 (shortest walking time) and
      recomputes T only when destinations, closures or one-way rules change (or a gathering cell is taken,
      below). A cell that is no destination but lower than its four neighbours (its T comes through a
      diagonal) walks toward the lowest of them (:meth:`_unstick`);
    * flux on each face: min(demand of the upstream cell x w x e_n, supply of the downstream cell
      x w) per unit time, with demand q(min(rho, rho_c)) and supply q(max(rho, rho_c)), q = rho v
      (the cell transmission model's sending and receiving functions, Daganzo 1994, for Weidmann's
      curve, Lebacque 1996): a face never carries more than J_max x w, and a queue discharges
      through a door at J_max x door width. w = dx x min(walkable fraction of the two cells), or
      the smaller ``passage_width`` (doors, gates, stairs) where given. Inflows are scaled so no
      cell exceeds rho_max x area;
    * destinations: sinks (exits, metro entrances: what reaches them leaves and is counted in
      :attr:`people_out`) and attractors (gathering places: T < 0 inside, decreasing away from the
      attractor's edge, so people walk in, fill the core first and stay; once full, the queue grows
      upstream). People who cannot reach an open destination because of a closure walk toward the
      nearest destination as if it were open and queue at the closure (they do not know);
    * hold (:meth:`set_hold`): attractor cells take people in up to a hold density (a gathering's target
      over its walkable area; rho_max by default), and a ``full`` place takes nobody more from outside.
      A cell that holds ``settle_share`` of its hold is *taken* while its place fills: no more a destination;
      its first ``stand_share`` x hold x area people stand there, the others walk on, inside the place, to
      its cells that still have room (so a place fed from one side fills behind its first rows, and no cell
      goes above its hold). A place with no open cell left is a destination as a whole (its queue grows
      outside, as before);
    * sources: :meth:`add_arrivals` (a rate per cell) enter as the cell can receive them, at most the
      CTM supply q(max(rho, rho_c)) x the cell's walking width per second
      (:func:`~models.kernels.crowdflow.admit`); :meth:`add_people` (at once) up to rho_max; the rest
      wait outside the grid (:attr:`people_waiting`) and enter when there is room.

    ``run_one_step(dt)`` advances exactly ``dt`` in n equal sub-steps dt / n <= cfl dx / (sqrt 2 v0):
    at that step a cell can send at most what it holds (|e_x| + |e_y| <= sqrt 2). People are
    conserved to rounding: stored = initial + in - out (:meth:`balance_error`).

    Parameters
    ----------
    ds : xarray.Dataset
        Static layers ``walkable_area`` [m2] and ``building_fraction`` [1] (optional
        ``passage_width`` [m], NaN where no door or stair) on dims (y, x), with an ``x``
        coordinate (cell size from its spacing) or a ``cell_size`` attribute [m]. A ``y``
        coordinate that increases with the row means row + 1 is north (else south, as twin grids).
    config : CrowdFlowConfig, optional
    parallel : bool
        Use the ``prange`` flux kernels (threads set with ``numba.set_num_threads``); the
        potential solver is serial either way. Results are bit-identical.
    count : ndarray, optional
        People per cell at the start [person]; zero by default. Must be zero on walls.
    cell_size : float, optional
        Overrides the cell size from ``ds``. [m]
    """

    name = "crowd_flow"
    inputs = (
        Var("walkable_area", "m2", GRID_DIMS, "float64", "open ground in the cell people can stand on",
            valid_range=(10, 100)),
        Var("building_fraction", "1", GRID_DIMS, "float64", "fraction of the cell covered by building footprints",
            valid_range=(0, 0.4)),
        Var("passage_width", "m", GRID_DIMS, "float64",
            "clear walking width of a door, gate or stair in the cell, NaN where none", optional=True,
            valid_range=(1, 10)),
        Var("crowd_arrival_rate", "person s-1", GRID_DIMS, "float64", "people arriving at an entrance in the cell",
            optional=True, valid_range=(0, 0.5)),
    )
    outputs = (
        Var("crowd_density", "person m-2", GRID_DIMS, "float64", "people per square metre of walkable area"),
        Var("crowd_speed", "m s-1", GRID_DIMS, "float64", "mean walking speed of the people in the cell"),
        Var("crowd_flow", "person m-1 s-1", GRID_DIMS, "float64",
            "people walking out of the cell per second per metre of its walking width"),
        Var("crowd_count", "person", GRID_DIMS, "float64", "people counted in the cell"),
        Var("crowd_velocity_x", "m s-1", GRID_DIMS, "float64", "mean crowd velocity, x component"),
        Var("crowd_velocity_y", "m s-1", GRID_DIMS, "float64", "mean crowd velocity, y component"),
    )
    references = (WEIDMANN, ZHAO, TSITSIKLIS, HUGHES, DAGANZO, LEBACQUE)
    static = ("walkable_area", "building_fraction")

    def __init__(self, ds: xr.Dataset, config: CrowdFlowConfig | None = None, parallel: bool = False,
                 count: np.ndarray | None = None, cell_size: float | None = None):
        self.check_inputs(ds, (*self.static, "passage_width"))
        cfg = self.config = config or CrowdFlowConfig()
        if cfg.routing not in ("density", "free"):
            raise ValueError(f"crowd_flow: routing must be 'density' or 'free', not {cfg.routing!r}")
        self.dx = float(cell_size or ds.attrs.get("cell_size") or _spacing(ds))
        self.coords = {d: ds.coords[d] for d in GRID_DIMS if d in ds.coords}
        self.area = self.read(ds, "walkable_area")
        self.shape = self.area.shape
        self.walkable = (self.area >= cfg.min_walkable_area) & (self.read(ds, "building_fraction") < cfg.wall_fraction)
        self.area = np.where(self.walkable, self.area, 0.0)
        width = np.clip(self.area / self.dx**2, 0.0, 1.0) * self.dx
        if "passage_width" in ds:
            given = self.read(ds, "passage_width")
            width = np.where(np.isfinite(given), np.maximum(given, 0.0), width)
        self.walkable &= width >= cfg.min_passage_width  # narrower than one person's shoulders: nobody walks there
        self.area = np.where(self.walkable, self.area, 0.0)
        self.width = np.where(self.walkable, width, 0.0)
        self.wx = np.zeros((self.shape[0], self.shape[1] + 1))
        self.wx[:, 1:-1] = np.minimum(self.width[:, :-1], self.width[:, 1:])
        self.wy = np.zeros((self.shape[0] + 1, self.shape[1]))
        self.wy[1:-1, :] = np.minimum(self.width[:-1, :], self.width[1:, :])
        y = ds.coords["y"].values if "y" in ds.coords else np.array([1.0, 0.0])
        self._north = -1.0 if y.size < 2 or y[1] < y[0] else 1.0  # +row component of a unit vector north
        self.rho_c, self.j_max = ck.weidmann_capacity(cfg.v0, cfg.gamma, cfg.rho_max)
        self.fd = np.array([cfg.v0, cfg.gamma, cfg.rho_max, self.rho_c, self.j_max])
        self.count = np.zeros(self.shape) if count is None else np.array(count, dtype=np.float64)
        if self.count.shape != self.shape or not np.all(self.count >= 0):
            raise ValueError("crowd_flow: count must be >= 0 with the grid's shape")
        if np.any(self.count[~self.walkable] > 0):
            raise ValueError(f"crowd_flow: people on {int((self.count[~self.walkable] > 0).sum())} wall cell(s)")
        self.initial = float(self.count.sum())
        self.sinks = np.zeros(self.shape, bool)
        self.attractors = np.zeros(self.shape, bool)
        self.closed = np.zeros(self.shape, bool)
        self.oneway = np.zeros(self.shape, bool)
        self.oneway_vec = np.zeros((2, *self.shape))
        self.hold = np.full(self.shape, cfg.rho_max)
        self.full = np.zeros(self.shape, bool)
        self.taken = np.zeros(self.shape, bool)
        self._stand_idx = np.zeros(0, np.int64)
        z = np.zeros
        self.sends = [z(self.shape) for _ in range(4)]
        self.accepted = [z(self.shape) for _ in range(4)]
        self.supply = z(self.shape)
        self.ex, self.ey = z(self.shape), z(self.shape)
        self.potential = np.full(self.shape, np.inf)
        self.out_acc, self.fx, self.fy, self.n_acc = z(self.shape), z(self.shape), z(self.shape), z(self.shape)
        self._acc_time = 0.0
        self.src_cells = np.zeros(0, np.int64)
        self.src_rate, self.src_backlog, self.src_admitted = z(0), z(0), z(0)
        self.time = 0.0
        self.n_substeps = 0
        self.sweep_rounds = 0
        self._since_potential = 0
        self._dirty = True
        self._update_masks()
        k = (ck.send_demand_par, ck.accept_inflow_par, ck.apply_transfers_par) if parallel else \
            (ck.send_demand, ck.accept_inflow, ck.apply_transfers)
        self._send, self._accept, self._apply = k

    # ------------------------------------------------------------ scenario controls
    def set_destinations(self, sinks: np.ndarray | None = None, attractors: np.ndarray | None = None) -> None:
        """Set the destination cells (boolean masks of the grid's shape; ``None`` keeps the current set).

        Sinks are exits (people reaching them leave); attractors are gathering places (people stay).
        Raises ``ValueError`` listing every problem (a destination on a wall, a cell in both sets).
        """
        new_s = self.sinks if sinks is None else self._mask(sinks, "sinks")
        new_a = self.attractors if attractors is None else self._mask(attractors, "attractors")
        problems = [f"{int(n)} {what} cell(s) on walls" for what, mask in (("sink", new_s), ("attractor", new_a))
                    if (n := (mask & ~self.walkable).sum())]
        if (n := (new_s & new_a).sum()):
            problems.append(f"{int(n)} cell(s) both sink and attractor")
        if problems:
            raise ValueError("crowd_flow: " + "; ".join(problems))
        self.sinks, self.attractors = new_s, new_a
        self._update_masks()

    def set_hold(self, density: np.ndarray | None = None, full: np.ndarray | None = None) -> None:
        """How many people the attractor cells hold, and which attractors take nobody more.

        ``density`` [person m-2], shape of the grid: an attractor cell takes people in up to
        min(density, rho_max) x area (a gathering's target spread over its walkable area); NaN or
        ``None`` mean rho_max (fill to the jam density, the default). Outside attractors it is ignored.
        ``full`` (boolean mask; ``None`` keeps the current one): attractor cells whose gathering holds its
        target: nobody steps into them from outside and they are no destination for people outside (who
        head for the other destinations), while the people in them stay (routed inward as before).
        """
        rho_max = self.config.rho_max
        if density is not None:
            d = np.asarray(density, dtype=np.float64)
            if d.shape != self.shape or np.any(d < 0):
                raise ValueError(f"crowd_flow: hold density must be >= 0 with shape {self.shape}")
            self.hold = np.where(np.isnan(d), rho_max, np.minimum(d, rho_max))
        else:
            self.hold = np.full(self.shape, rho_max)
        if full is not None and not np.array_equal(m := self._mask(full, "full"), self.full):
            self.full = m
            self._update_masks()
        else:
            self._update_caps()

    def set_closed(self, cells: np.ndarray, closed: bool = True) -> None:
        """Close (or with ``closed=False`` reopen) the cells of a boolean mask: nobody may enter them.

        A closed sink or attractor is no destination while closed; arrivals at a closed cell wait.
        """
        mask = self._mask(cells, "cells")
        self.closed = (self.closed | mask) if closed else (self.closed & ~mask)
        self._update_masks()

    def set_one_way(self, cells: np.ndarray, direction_deg: float | None) -> None:
        """Allow movement only with a positive component along a bearing in the cells of a mask.

        ``direction_deg`` is clockwise from grid north (0 north, 90 east); ``None`` lifts the rule.
        A step between two cells must satisfy the rule of each one-way cell it leaves or enters,
        and routing respects it (the potential is solved on the directed moves).
        """
        mask = self._mask(cells, "cells")
        if direction_deg is None:
            self.oneway &= ~mask
        else:
            b = math.radians(direction_deg)
            self.oneway |= mask
            self.oneway_vec[0][mask] = math.sin(b)  # +j is east
            self.oneway_vec[1][mask] = math.cos(b) * self._north
        self._update_masks()

    def add_arrivals(self, cells, people_per_s: float | np.ndarray) -> None:
        """People arrive at the selected cells at ``people_per_s`` each [person s-1] until changed (0 stops).

        ``cells`` is a boolean mask of the grid's shape, a ``(rows, cols)`` tuple of index arrays or a
        1-D integer array of flat (row-major) indices; ``people_per_s`` is a scalar (the rate of EACH
        selected cell, not a total) or one value per selected cell.
        """
        idx, rate = self._select(cells, people_per_s, "people_per_s")
        pos = self._sources(idx)
        self.src_rate[pos] = rate

    def add_people(self, cells, people: float | np.ndarray) -> None:
        """Put ``people`` [person] in each selected cell now (those that do not fit wait to enter).

        ``cells`` as in :meth:`add_arrivals`; ``people`` is a scalar (per cell, not a total) or one value
        per selected cell.
        """
        idx, n = self._select(cells, people, "people")
        pos = self._sources(idx)
        self.src_backlog[pos] += n
        ck.admit(self.src_cells, np.zeros(self.src_cells.size), self.src_backlog, self.count.reshape(-1),
                 self.cap_admit.reshape(-1), self.area.reshape(-1), self.width.reshape(-1), self.fd, 0.0,
                 self.src_admitted)

    # ------------------------------------------------------------- stepping
    def stable_dt(self) -> float:
        """Largest sub-step, cfl dx / (sqrt(2) v0). [s]"""
        return self.config.cfl * self.dx / (math.sqrt(2.0) * self.config.v0)

    def run_one_step(self, dt: float) -> None:
        """Advance exactly ``dt`` [s] in equal sub-steps no longer than :meth:`stable_dt`."""
        if not dt > 0:
            raise ValueError("crowd_flow: dt must be > 0 s")
        n = max(1, math.ceil(dt / self.stable_dt() - 1e-9))
        h = dt / n
        for a in (self.fx, self.fy, self.n_acc):
            a.fill(0.0)
        density = self.config.routing == "density"
        for _ in range(n):
            if self._update_taken():
                self._dirty = True
            if self._dirty or (density and self._since_potential >= self.config.potential_every):
                self.refresh_potential()
            self._substep(h)
        self._acc_time = dt
        self.time += dt

    def _substep(self, h: float) -> None:
        sE, sW, sS, sN = self.sends
        aE, aW, aS, aN = self.accepted
        self._send(self.count, self.area, self.ex, self.ey, self.moves, self.wx, self.wy, h, self.fd, sE, sW, sS, sN,
                   self.supply)
        if self._stand_idx.size:
            self._stand_still(self._stand_idx)
        self._accept(self.count, self.cap, sE, sW, sS, sN, self.supply, self.wx, self.wy, h, aE, aW, aS, aN)
        self._apply(self.count, self.sink_open, h, aE, aW, aS, aN, self.out_acc, self.fx, self.fy, self.n_acc)
        if self.src_cells.size:
            ck.admit(self.src_cells, self.src_rate, self.src_backlog, self.count.reshape(-1),
                     self.cap_admit.reshape(-1), self.area.reshape(-1), self.width.reshape(-1), self.fd, h,
                     self.src_admitted)
        self._since_potential += 1
        self.n_substeps += 1

    def refresh_potential(self) -> None:
        """Recompute the travel-time potential and the walking directions now."""
        cfg = self.config
        self._update_taken()
        cost = np.empty(self.shape)
        if cfg.routing == "density":
            ck.slowness(self.count, self.area, self.moves, self.fd, cfg.min_speed, cost)
        else:
            cost.fill(1.0 / cfg.v0)
        place = self.attractors & self.enter
        room = self._room(place & ~self.full)
        T = self._outer(cost, room)
        attr = room | (place & self.full)  # where people walk in and stay: T < 0, lowest at the core
        if attr.any():
            moves_in = np.where(attr, self.moves & _bits_into(attr), 0).astype(np.int8)
            edge = attr & ((self.moves & _bits_into(~attr)) != 0)  # where people walk in
            inside = self._solve(cost, moves_in, edge)
            T = np.where(attr, np.where(np.isfinite(inside), -inside, 0.0), T)
        keep_in = np.where(place, self.moves & _bits_into(place), self.moves).astype(np.int8)  # nobody leaves
        if (through := place & ~attr).any():  # taken cells: toward the room of their place, inside it
            to_room = self._solve(cost, keep_in, room)
            T = np.where(through, np.where(np.isfinite(to_room), to_room, 0.0), T)
        if self.closed.any() and (self.walkable & ~np.isfinite(T)).any():
            blind = self._solve(cost, self.moves_all, (self.sinks | self.attractors) & self.walkable)
            T = np.where(np.isfinite(T), T, blind)
        self.potential = T
        ck.descent_direction(T, keep_in, self.ex, self.ey)
        self._unstick(T, keep_in, ~(self.sinks | self.attractors))
        self._dirty = False
        self._since_potential = 0

    def _outer(self, cost: np.ndarray, room: np.ndarray) -> np.ndarray:
        """Travel time to the destinations outside the places people stay in. With ``exits_last`` and a place with room,
        only to those places; the exits are for the people who cannot reach one (and only their exits are open, so
        nobody on the way to a place leaves by an exit they walk over)."""
        exits = self.sinks & self.enter
        if not (self.config.exits_last and room.any()):
            self._open_sinks(exits)
            return self._solve(cost, self.moves, exits | room)
        T = self._solve(cost, self.moves, room)
        lost = ~np.isfinite(T)
        if (exits & lost).any():
            T = np.where(lost, self._solve(cost, self.moves, exits & lost), T)
        self._open_sinks(exits & lost)
        return T

    def _open_sinks(self, open_: np.ndarray) -> None:
        if not np.array_equal(open_, self.sink_open):
            self.sink_open = open_
            self._update_caps()

    def _unstick(self, T: np.ndarray, moves: np.ndarray, walking: np.ndarray) -> None:
        """Walking direction of cells that are no destination but lower than their four neighbours: toward the lowest
        allowed one. Their T comes through a diagonal (Tsitsiklis' update, :func:`~models.kernels.crowdflow._tri`)
        at their own slowness, so with density routing a congested axis neighbour A on the way c -> A -> D can be
        higher than c itself; the upwind gradient is then zero and the people in c would stand there for good."""
        stuck = walking & (self.ex == 0.0) & (self.ey == 0.0) & (moves != 0) & np.isfinite(T)
        if not stuck.any():
            return
        ny, nx = self.shape
        best, ex, ey = np.full(self.shape, np.inf), np.zeros(self.shape), np.zeros(self.shape)
        pad = np.pad(T, 1, constant_values=np.inf)
        for bit, di, dj in _BITS:
            tn = np.where(moves & bit, pad[1 + di:1 + di + ny, 1 + dj:1 + dj + nx], np.inf)
            lower = tn < best
            best, ex, ey = np.where(lower, tn, best), np.where(lower, dj, ex), np.where(lower, di, ey)
        ok = stuck & np.isfinite(best)
        self.ex[ok], self.ey[ok] = ex[ok], ey[ok]

    def _room(self, open_: np.ndarray) -> np.ndarray:
        """Destination cells of the filling places ``open_``: those not taken; all of a place none of whose cells
        has room (then its queue grows outside it, as at the jam density)."""
        room = open_ & ~self.taken
        if not (open_ & self.taken).any():
            return room
        label, n = ndimage.label(open_)
        has_room = np.zeros(n + 1, bool)
        has_room[label[room]] = True
        return room | (open_ & ~has_room[label])

    def _update_taken(self) -> bool:
        """Which cells of the filling places are taken: they hold ``settle_share`` of their hold x area, or were taken
        (their standing people stay); True if that changed."""
        if not (self.attractors.any() or self.taken.any()):
            return False
        cap = self.cap_admit
        filling = self.attractors & self.enter & ~self.full & (cap > 0)
        now = filling & (self.taken | (self.count >= self.config.settle_share * cap))
        if np.array_equal(now, self.taken):
            return False
        self.taken = now
        self._stand_idx = np.flatnonzero(now)
        return True

    def _stand_still(self, idx: np.ndarray) -> None:
        """Scale the sends of the taken cells ``idx`` (flat) so the ``stand_share`` x hold x area people standing in
        each stay: only those above walk on. [person]"""
        sends = [s.reshape(-1) for s in self.sends]
        total = sends[0][idx] + sends[1][idx] + sends[2][idx] + sends[3][idx]
        walking = np.maximum(self.count.reshape(-1)[idx] - self.config.stand_share * self.cap_admit.reshape(-1)[idx], 0)
        f = np.where(total > walking, walking / np.where(total > 0, total, 1.0), 1.0)
        for s in sends:
            s[idx] *= f

    def _solve(self, cost: np.ndarray, moves: np.ndarray, seed: np.ndarray) -> np.ndarray:
        cfg = self.config
        T = np.empty(self.shape)
        rounds = ck.fast_sweep(cost, moves, seed, self.dx, cfg.sweep_tol, cfg.sweep_max_rounds, T)
        self.sweep_rounds += rounds
        if rounds > cfg.sweep_max_rounds:
            log.warning("crowd_flow: fast sweeping did not converge in %d rounds", cfg.sweep_max_rounds)
        return T

    # ------------------------------------------------------------- bookkeeping
    @property
    def people_stored(self) -> float:
        """People on the grid now. [person]"""
        return float(self.count.sum())

    @property
    def people_in(self) -> float:
        """People that entered the grid from sources (arrivals and injections) so far. [person]"""
        return float(self.src_admitted.sum())

    @property
    def people_out(self) -> float:
        """People that left the grid through sinks so far. [person]"""
        return float(self.out_acc.sum())

    @property
    def people_waiting(self) -> float:
        """People at sources still waiting for room to enter (not on the grid). [person]"""
        return float(self.src_backlog.sum())

    def balance_error(self) -> float:
        """(stored - initial - in + out) / max(initial + in, stored): zero up to rounding. [1]"""
        bal = self.people_stored - self.initial - self.people_in + self.people_out
        return bal / max(self.initial + self.people_in, self.people_stored, 1e-300)

    # ------------------------------------------------------------------ outputs
    def fields(self) -> xr.Dataset:
        """The declared outputs; speed, flow and velocity are means over the last :meth:`run_one_step`.

        Per cell, from the people it sent (its outflow vector F, summed over the sub-steps) and the
        people it held (N): velocity = F dx / sum(N dt) (x east, y north), the mean velocity of the
        people in the cell, D(rho) / rho along the walking direction, never above v0; speed = |velocity|;
        crowd_flow = |F| / (dt x walking width), people per second per metre of the cell's walking
        width (= density x speed where the width is area / dx). Walls: NaN; empty cells: 0.
        """
        wall = ~self.walkable
        zero = np.zeros(self.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(wall, np.nan, self.count / self.area)
            if self._acc_time > 0:
                fx, fy = self.fx / (self._acc_time * self.width), self.fy / (self._acc_time * self.width)
                held = self.n_acc > 0
                vx = np.where(held, self.fx * self.dx / self.n_acc, 0.0)
                vy = np.where(held, self.fy * self.dx / self.n_acc, 0.0)
            else:
                fx, fy, vx, vy = zero, zero, zero, zero

        def cells(a: np.ndarray) -> np.ndarray:
            return np.where(wall, np.nan, np.where(self.width > 0, a, 0.0))

        arrays = {"crowd_density": rho, "crowd_speed": cells(np.hypot(vx, vy)), "crowd_flow": cells(np.hypot(fx, fy)),
                  "crowd_count": self.count.copy(), "crowd_velocity_x": cells(vx),
                  "crowd_velocity_y": cells(vy * self._north)}
        return self.outputs_from_si(arrays, self.coords)

    def update(self, ds: xr.Dataset, dt: float) -> xr.Dataset:
        """Take ``crowd_arrival_rate`` from ``ds`` if present (it replaces all rates), advance ``dt`` [s]."""
        if "crowd_arrival_rate" in ds:
            self.check_inputs(ds, ("crowd_arrival_rate",))
            rate = self.read(ds, "crowd_arrival_rate")
            self.src_rate[:] = 0.0
            self.add_arrivals(rate > 0, rate[rate > 0])
        self.run_one_step(dt)
        return self.fields()

    # ------------------------------------------------------------------ internals
    def _mask(self, mask: np.ndarray, what: str) -> np.ndarray:
        m = np.asarray(mask)
        if m.shape != self.shape or m.dtype != bool:
            raise ValueError(f"crowd_flow: {what} must be a boolean mask of shape {self.shape}")
        return m.copy()

    def _select(self, cells, values, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of the selected cells and one value per cell (checked)."""
        arr = None if isinstance(cells, tuple) else np.asarray(cells)
        if arr is None:
            idx = np.ravel_multi_index(tuple(np.asarray(c, np.int64) for c in cells), self.shape)
        elif arr.dtype.kind in "iu" and arr.ndim == 1:
            if arr.size and (arr.min() < 0 or arr.max() >= self.area.size):
                raise ValueError("crowd_flow: flat cell index outside the grid")
            idx = arr.astype(np.int64)
        else:
            idx = np.flatnonzero(self._mask(arr, "cells"))
        vals = np.broadcast_to(np.asarray(values, dtype=np.float64), idx.shape).copy()
        problems = []
        if np.unique(idx).size != idx.size:
            problems.append("a cell is selected twice")
        if not np.all(np.isfinite(vals) & (vals >= 0)):
            problems.append(f"{what} must be finite and >= 0")
        if (n := (~self.walkable.reshape(-1)[idx]).sum()):
            problems.append(f"{int(n)} selected cell(s) are walls")
        if problems:
            raise ValueError("crowd_flow: " + "; ".join(problems))
        return idx, vals

    def _sources(self, idx: np.ndarray) -> np.ndarray:
        """Positions of cells ``idx`` in the source table (new cells appended, table kept sorted)."""
        new = np.setdiff1d(idx, self.src_cells)
        if new.size:
            cells = np.concatenate([self.src_cells, new])
            order = np.argsort(cells, kind="stable")
            pad = np.zeros(new.size)
            self.src_cells = cells[order]
            self.src_rate = np.concatenate([self.src_rate, pad])[order]
            self.src_backlog = np.concatenate([self.src_backlog, pad])[order]
            self.src_admitted = np.concatenate([self.src_admitted, pad])[order]
        return np.searchsorted(self.src_cells, idx)

    def _update_masks(self) -> None:
        """Move bitmasks, capacities and open sinks after a change of destinations, closures or one-way rules."""
        self.enter = self.walkable & ~self.closed
        self.moves = self._moves(self.enter)
        self.moves_all = self._moves(self.walkable)
        sealed = self.full & self.attractors
        self.moves &= ~np.where(sealed, 0, _bits_into(sealed)).astype(np.int8)  # nobody steps into a full place
        self.sink_open = self.sinks & self.enter
        self._update_caps()
        self._dirty = True

    def _update_caps(self) -> None:
        """Capacities: rho_max x area, the hold density x area on attractors, inf on open sinks, 0 if closed."""
        rho = np.where(self.attractors, self.hold, self.config.rho_max)
        self.cap_admit = np.where(self.enter, rho * self.area, 0.0)  # sources never overfill
        self.cap = np.where(self.sink_open, np.inf, self.cap_admit)  # what reaches a sink leaves

    def _moves(self, enter: np.ndarray) -> np.ndarray:
        """Move bitmask: from a walkable cell to an enterable neighbour through a face of positive width,
        obeying the one-way rule of both cells."""
        ny, nx = self.shape
        moves = np.zeros(self.shape, np.int8)
        faces = {1: self.wx[:, 1:], 2: self.wx[:, :-1], 4: self.wy[1:, :], 8: self.wy[:-1, :]}
        ox, oy = self.oneway_vec
        for bit, di, dj in _BITS:
            src = (slice(max(-di, 0), ny - max(di, 0)), slice(max(-dj, 0), nx - max(dj, 0)))
            dst = (slice(max(di, 0), ny + min(di, 0)), slice(max(dj, 0), nx + min(dj, 0)))
            along = dj * ox + di * oy  # component of the one-way bearing along this move
            ok = self.walkable[src] & enter[dst] & (faces[bit][src] > 0)
            ok &= (~self.oneway[src] | (along[src] > 1e-9)) & (~self.oneway[dst] | (along[dst] > 1e-9))
            moves[src] |= np.where(ok, bit, 0).astype(np.int8)
        return moves


def _bits_into(mask: np.ndarray) -> np.ndarray:
    """Move bits (int8) toward neighbours inside ``mask``, per cell."""
    ny, nx = mask.shape
    out = np.zeros(mask.shape, np.int8)
    for bit, di, dj in _BITS:
        src = (slice(max(-di, 0), ny - max(di, 0)), slice(max(-dj, 0), nx - max(dj, 0)))
        dst = (slice(max(di, 0), ny + min(di, 0)), slice(max(dj, 0), nx + min(dj, 0)))
        out[src] |= np.where(mask[dst], bit, 0).astype(np.int8)
    return out


def _spacing(ds: xr.Dataset) -> float:
    if "x" in ds.coords and ds.sizes.get("x", 0) > 1:
        return abs(float(ds["x"][1] - ds["x"][0]))
    raise ValueError("crowd_flow: give the cell size (an 'x' coordinate, a 'cell_size' attribute or cell_size=)")

