"""Generate the crowd truth case of issue 14: a bottleneck queue simulated with JuPedSim, measured with PedPy.

Re-run (from the repository root; a few minutes on one core)::

    pip install -r tests/truth/crowd/requirements-truth.txt
    nice -n 19 python tests/truth/crowd/generate.py

Pinned versions (also in ``requirements-truth.txt``; they are NOT dependencies of the project, the tests
read only the outputs kept next to this script): jupedsim==1.4.2, pedpy==1.5.1.

Outputs, written next to this script and kept in the repository (small):

* ``counts.csv``: ``t_s,device,count,density_person_m2`` for every whole second of the case and every
  counter: the people inside the counter's polygon at that second [person] and the PedPy classic density
  there, count / walkable area of the polygon [person m-2];
* ``counters.geojson``: the counters as registry features (``ingest.registry``), polygons in CGCS2000
  lon/lat (= WGS84 here, ``twin.district.geo``), with ``walkable_area_m2``.

The place
---------
The stair from the Lujiazui circular pedestrian bridge (陆家嘴环形人行天桥, Pudong) down to Exit 1 of
Lujiazui station (Metro Line 2), about 1 km east of the Bund promenade, across the Huangpu. It is inside
the bundled district's grid and is a real bottleneck: the bridge deck narrows to a stair that ends at a
metro entrance, where crowds leaving Lujiazui after evening light shows and countdown events queue for
the metro. The alignment is taken from the bundled OpenStreetMap-derived tiles (``data/bund``, ODbL 1.0,
(c) OpenStreetMap contributors): the bridge's east branch (``roads.geojson`` footway id 104439072,
``is_bridge``), the stair (steps id 104439069) and the subway entrance ``ref`` 1 (``pois.geojson``,
id 2703743734), projected to the twin's CRS (EPSG:4549) and rounded to 0.1 m.

Geometry (grid CRS EPSG:4549, metres, so that it lines up with the twin's cells)
------------------------------------------------------------------------------
* deck: the branch from the ring (``DECK[0]``) to the stair head (``DECK[-1]``), 56 m long, ``DECK_WIDTH``
  (4 m) wide (flat ends, mitred bend);
* stair: ``STAIR_WIDTH`` (1.2 m) wide and 20 m long, from the deck's end down to the stair foot; it leaves
  the deck on its left side at a right angle: the bottleneck;
* landing: ``LANDING_WIDTH`` wide, from the stair foot to the metro entrance, where people leave (exit
  stage: the landing east of the entrance point).

The widths are assumptions ([design]): the tiles give centre lines, not widths. The stair is walked in
plan: the model has no slope, so on it the desired speed is capped at ``STAIR_SPEED`` (people descending
stairs walk at about 0.6-0.8 m/s horizontally [mem]). EPSG:4549 metres are grid metres: at Lujiazui its
point scale is 1.00025, so ground areas are 0.05 % smaller than grid areas, a difference no test sees.
The simulation runs in a local frame shifted by ``ORIGIN`` (a multiple of 10 m) to keep coordinates small.

Demand
------
People arrive on the deck as a Poisson process (seeded, ``SEED``) whose rate steps through ``DEMAND``:
0.5 person/s for a minute, then five minutes of event egress at 2.2 person/s, about twice what the stair
passes (the queue builds at the stair head and backs up some 15 m along the deck), then 0.5 person/s for
two minutes while the queue drains, then nobody. They enter on a line across the deck ``SPAWN_BACK``
(30 m) before its end, past the bend (walking the first 26 m from the ring would only cost run time); a
person who cannot be placed (the line is full) waits and enters at the first free moment (the wait is
printed). The case runs until the area is empty and ``TAIL_S`` more seconds: about 13 minutes.

Model: JuPedSim's Collision-Free Speed Model (Tordeux, Chraibi, Seyfried 2016; the model of JuPedSim's
bottleneck notebooks), time step 0.01 s, trajectories written once per second, agent radius ``RADIUS``,
desired speeds normal(1.34, 0.26) m/s clipped to 0.8-1.8 (Weidmann's mean free speed [mem]).

Counters (measurement areas, convex, wholly walkable, so walkable area = polygon area)
-----------------------------------------------------------------------------------
``COUNTERS`` (rectangles given in metres along and across the deck or stair axis):

* ``truth-crowd-01``, 2 x 3.05 m on the deck in front of the stair entrance: the densest place; it passes the
  orange and red thresholds;
* ``truth-crowd-02``, 2 x 3.05 m in the middle of the deck 12-15 m before its end, in the queue's tail: it
  passes 2 person/m2 but not 4;
* ``truth-crowd-03``, 1.1 x 3 m on the stair, 8-11 m down: people move there at the stair's capacity,
  slower than on the deck, so they bunch up; it is at 2-2.4 person/m2 much of the time the queue stands,
  never near 4;
* ``truth-crowd-04``, 2 x 3.05 m in the middle of the deck 26-29 m before its end, where people come onto the
  deck: a moving crowd whose density rises from nothing to about 1 person/m2 within a minute and never
  reaches 2 (the queue never backs up that far).

The areas (6.1 and 3.3 m2) put no crowd threshold (1.08, 2, 4, 5 person/m2) on a whole count, so a rounding
difference in the twin cannot move a threshold crossing. No two counters share a cell of a 5 m or 10 m grid
snapped like the twin's (multiples of the cell size in EPSG:4549), so the twin's density in a counter's cells
is that counter's alone.

PedPy computes, per counter and per second, the classic density N / A(M) (``compute_classic_density``);
the count is N = density x A(M), checked to be an integer.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jupedsim as jps
import numpy as np
import pedpy
import shapely
from shapely import affinity
from shapely.geometry import LineString, Polygon

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # run as a script from anywhere: this checkout's packages first

from twin.district import geo  # noqa: E402 - after the path fix above

CRS = geo.DEFAULT_CRS
"""The twin's projected CRS (CGCS2000 / 3-degree Gauss-Kruger CM 120E)."""
ORIGIN = (642580.0, 3458580.0)
"""South-west corner of the local simulation frame in EPSG:4549. [m] A multiple of 10 m."""

DECK = ((642584.1, 3458588.6), (642606.0, 3458593.5), (642629.7, 3458617.7))
"""Centre line of the bridge's east branch from the ring to the stair head (OSM footway 104439072). [m]"""
STAIR_FOOT = (642613.5, 3458630.6)
"""Lower end of the stair (OSM steps 104439069). [m]"""
METRO_EXIT = (642629.8, 3458630.0)
"""Lujiazui station Exit 1 (OSM subway_entrance ref 1, node 2703743734). [m]"""
DECK_WIDTH = 4.0
"""Clear width of the bridge deck. [m] (assumed)"""
STAIR_WIDTH = 1.2
"""Clear width of the stair: the bottleneck. [m] (assumed)"""
STAIR_SETBACK = 1.2
"""Distance from the deck's end back to the stair's centre line, so the whole stair leaves the deck. [m]"""
LANDING_WIDTH = 5.0
"""Width of the landing at the stair foot. [m] (assumed)"""
STAIR_SPEED = 0.7
"""Cap of the desired speed on the stair. [m s-1]"""
SPAWN_BACK = 30.0
"""People enter the case on a line across the deck this far before its end (past the bend). [m]"""

DEMAND = ((0.0, 60.0, 0.5), (60.0, 360.0, 2.2), (360.0, 480.0, 0.5))
"""Arrival rate by phase: (start [s], end [s], rate [person s-1])."""
SEED = 14
"""Seed of the arrivals and the desired speeds."""
RADIUS = 0.17
"""Agent radius. [m]"""
SPEED_MEAN, SPEED_SD, SPEED_MIN, SPEED_MAX = 1.34, 0.26, 0.8, 1.8
"""Desired free walking speed distribution. [m s-1]"""
DT = 0.01
"""JuPedSim time step. [s]"""
FRAME_EVERY = 100
"""Iterations per written frame: one frame per second at ``DT``."""
STAIR_UPDATE_EVERY = 10
"""Iterations between updates of who is on the stair (0.1 s)."""
TAIL_S = 30
"""Seconds of empty area kept after the last person left. [s]"""
MAX_S = 1800
"""Hard stop of the simulation. [s]"""
AREA_DIGITS = 6
"""A counter's walkable area is written rounded to 1e-6 m2 (the local frame's shift leaves ~1e-10 m2 noise)."""


@dataclass(frozen=True)
class Counter:
    """A counter the case places: registry id, names and rectangle in the deck/landing frame.

    ``along`` and ``across`` are offsets [m] from ``anchor`` along the unit vector ``axis`` and to its left;
    the rectangle spans ``along[0]..along[1]`` x ``across[0]..across[1]``.
    """

    device: str
    name: str
    anchor: tuple[float, float]
    axis: tuple[float, float]
    along: tuple[float, float]
    across: tuple[float, float]

    def polygon(self) -> Polygon:
        """The counter's rectangle in EPSG:4549. [m]"""
        ax = np.asarray(self.axis, dtype=float)
        ax = ax / np.hypot(*ax)
        left = np.array([-ax[1], ax[0]])
        a = np.asarray(self.anchor, dtype=float)
        corners = [a + s * ax + t * left for s, t in ((self.along[0], self.across[0]), (self.along[1], self.across[0]),
                                                      (self.along[1], self.across[1]), (self.along[0], self.across[1]))]
        return Polygon(corners)


def _unit(p: tuple[float, float], q: tuple[float, float]) -> tuple[float, float]:
    """Unit vector from p to q."""
    d = np.subtract(q, p)
    d = d / np.hypot(*d)
    return float(d[0]), float(d[1])


DECK_AXIS = _unit(DECK[1], DECK[2])
STAIR_HEAD = (DECK[2][0] - STAIR_SETBACK * DECK_AXIS[0], DECK[2][1] - STAIR_SETBACK * DECK_AXIS[1])
"""Upper end of the stair's centre line, on the deck's centre line. [m]"""
STAIR_AXIS = _unit(STAIR_HEAD, STAIR_FOOT)
LANDING_AXIS = _unit(STAIR_FOOT, METRO_EXIT)
COUNTERS = (
    Counter("truth-crowd-01", "陆家嘴天桥1号口楼梯口 Lujiazui skywalk, head of the stair to Metro Exit 1",
            DECK[2], DECK_AXIS, (-4.05, -1.0), (DECK_WIDTH / 2 - 2.05, DECK_WIDTH / 2 - 0.05)),
    Counter("truth-crowd-02", "陆家嘴天桥东支路 Lujiazui skywalk east branch, 12-15 m before the stair",
            DECK[2], DECK_AXIS, (-15.05, -12.0), (-1.0, 1.0)),
    Counter("truth-crowd-03", "陆家嘴站1号口楼梯 Lujiazui station Exit 1, on the stair",
            STAIR_HEAD, STAIR_AXIS, (8.0, 11.0), (-STAIR_WIDTH / 2 + 0.05, STAIR_WIDTH / 2 - 0.05)),
    Counter("truth-crowd-04", "陆家嘴天桥东支路入口 Lujiazui skywalk east branch, 26-29 m before the stair",
            DECK[2], DECK_AXIS, (-29.05, -26.0), (-1.0, 1.0)),
)
"""The counters of the case (ids ``truth-crowd-NN``); rectangles in metres from their anchors."""


# --------------------------------------------------------------------------------------------- geometry
def deck_polygon() -> Polygon:
    """The bridge deck, flat ends and a mitred bend. [EPSG:4549 m]"""
    return LineString(DECK).buffer(DECK_WIDTH / 2, cap_style="flat", join_style="mitre")


def stair_polygon() -> Polygon:
    """The stair from the deck's left side near its end down to the stair foot. [EPSG:4549 m]"""
    return LineString([STAIR_HEAD, STAIR_FOOT]).buffer(STAIR_WIDTH / 2, cap_style="flat")


def landing_polygon() -> Polygon:
    """The landing from the stair foot to the metro entrance, square ends. [EPSG:4549 m]"""
    return LineString([STAIR_FOOT, METRO_EXIT]).buffer(LANDING_WIDTH / 2, cap_style="square")


def walkable_polygon() -> Polygon:
    """Deck, stair and landing as one simple polygon. [EPSG:4549 m]"""
    union = shapely.union_all([deck_polygon(), stair_polygon(), landing_polygon()])
    union = shapely.set_precision(union, 0.001)
    if not isinstance(union, Polygon) or union.interiors or not union.is_valid:
        raise RuntimeError(f"the walkable area is not one simple polygon: {union.geom_type}")
    return shapely.simplify(union, 0.0)


def exit_polygon() -> Polygon:
    """Where people leave: the landing east of the metro entrance point. [EPSG:4549 m]"""
    ax = np.asarray(LANDING_AXIS)
    cut = Polygon([tuple(np.asarray(METRO_EXIT) + s * ax + t * np.array([-ax[1], ax[0]]))
                   for s, t in ((0.0, -5.0), (5.0, -5.0), (5.0, 5.0), (0.0, 5.0))])
    return landing_polygon().intersection(cut)


def spawn_line() -> tuple[np.ndarray, np.ndarray]:
    """Centre [m] and lateral unit vector of the line across the deck where people enter, ``SPAWN_BACK``
    before the deck's end."""
    ax = np.asarray(DECK_AXIS)
    return np.asarray(DECK[2]) - SPAWN_BACK * ax, np.array([-ax[1], ax[0]])


def to_local(g: shapely.Geometry) -> shapely.Geometry:
    """Shift a geometry from EPSG:4549 into the local simulation frame. [m]"""
    return affinity.translate(g, -ORIGIN[0], -ORIGIN[1])


def cells_touched(poly: Polygon, cell: float) -> set[tuple[int, int]]:
    """(column, row) indices of the cells of a grid of size ``cell`` [m] snapped to multiples of ``cell`` in
    EPSG:4549 (as ``twin.district.grid.GridSpec.from_bounds`` snaps) that share area with ``poly``."""
    xmin, ymin, xmax, ymax = poly.bounds
    out = set()
    for i in range(math.floor(xmin / cell), math.floor(xmax / cell) + 1):
        for j in range(math.floor(ymin / cell), math.floor(ymax / cell) + 1):
            box = shapely.box(i * cell, j * cell, (i + 1) * cell, (j + 1) * cell)
            if poly.intersection(box).area > 0.0:
                out.add((i, j))
    return out


def check_counters(walkable: Polygon) -> None:
    """Counters wholly walkable, convex and without a shared 5 m or 10 m cell; raises RuntimeError."""
    for c in COUNTERS:
        p = c.polygon()
        if not walkable.contains(p):
            raise RuntimeError(f"{c.device} is not wholly inside the walkable area")
    for cell in (5.0, 10.0):
        seen: dict[tuple[int, int], str] = {}
        for c in COUNTERS:
            for key in cells_touched(c.polygon(), cell):
                if key in seen:
                    raise RuntimeError(f"{c.device} and {seen[key]} share a {cell:g} m cell {key}")
                seen[key] = c.device


# --------------------------------------------------------------------------------------------- demand
def arrival_times(rng: np.random.Generator) -> np.ndarray:
    """Poisson arrival times [s] over the phases of ``DEMAND``, sorted."""
    out = []
    for start, end, rate in DEMAND:
        n = rng.poisson(rate * (end - start))
        out.append(np.sort(rng.uniform(start, end, n)))
    return np.concatenate(out)


def desired_speeds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Desired free walking speeds of ``n`` people. [m s-1]"""
    return np.clip(rng.normal(SPEED_MEAN, SPEED_SD, n), SPEED_MIN, SPEED_MAX)


# --------------------------------------------------------------------------------------------- simulation
class Run:
    """One JuPedSim run of the case in the local frame, trajectories to ``trajectory_file`` at 1 frame/s."""

    def __init__(self, trajectory_file: Path) -> None:
        self.walkable = to_local(walkable_polygon())
        self.stair = to_local(stair_polygon())
        writer = jps.SqliteTrajectoryWriter(output_file=trajectory_file, every_nth_frame=FRAME_EVERY)
        self.sim = jps.Simulation(model=jps.CollisionFreeSpeedModel(), geometry=self.walkable, dt=DT,
                                  trajectory_writer=writer)
        exit_id = self.sim.add_exit_stage(to_local(exit_polygon()))
        self.journey = self.sim.add_journey(jps.JourneyDescription([exit_id]))
        self.exit_id = exit_id
        start, lateral = spawn_line()
        self.spawn_start = start - np.asarray(ORIGIN)
        self.spawn_lateral = lateral
        rng = np.random.default_rng(SEED)
        self.arrivals = arrival_times(rng)
        self.speeds = desired_speeds(rng, self.arrivals.size)
        self.lateral = rng.uniform(-1.0, 1.0, (self.arrivals.size, 8))
        self.next = 0
        self.free_speed: dict[int, float] = {}
        self.on_stair: set[int] = set()
        self.entered: list[float] = []

    def _spawn_due(self, now: float) -> None:
        """Add every person whose arrival time has come, where the spawn line has room."""
        half = DECK_WIDTH / 2 - RADIUS - 0.25
        while self.next < self.arrivals.size and self.arrivals[self.next] <= now:
            for u in self.lateral[self.next]:
                pos = self.spawn_start + u * half * self.spawn_lateral
                if not list(self.sim.agents_in_range((float(pos[0]), float(pos[1])), 2 * RADIUS + 0.1)):
                    break
            else:
                return  # the line is full: this person (and those after) wait
            params = jps.CollisionFreeSpeedModelAgentParameters(
                position=(float(pos[0]), float(pos[1])), desired_speed=float(self.speeds[self.next]),
                radius=RADIUS, journey_id=self.journey, stage_id=self.exit_id)
            agent = self.sim.add_agent(params)
            self.free_speed[agent] = float(self.speeds[self.next])
            self.entered.append(now - float(self.arrivals[self.next]))
            self.next += 1

    def _stair_speeds(self) -> None:
        """Cap the desired speed of the people on the stair at ``STAIR_SPEED``, restore it off the stair."""
        now_on = {a if isinstance(a, int) else a.id for a in self.sim.agents_in_polygon(self.stair)}
        for a in now_on - self.on_stair:
            self.sim.agent(a).model.desired_speed = min(self.free_speed[a], STAIR_SPEED)
        for a in self.on_stair - now_on:
            self.sim.agent(a).model.desired_speed = self.free_speed[a]
        self.on_stair = now_on

    def _forget_removed(self) -> None:
        """Drop the people who left through the exit in the last iteration."""
        for a in self.sim.removed_agents():
            self.free_speed.pop(a, None)
            self.on_stair.discard(a)

    def run(self) -> int:
        """Run until the area is empty after the last arrival (plus ``TAIL_S``); returns the last second."""
        last_busy = 0.0
        while self.sim.elapsed_time() < MAX_S:
            now = self.sim.elapsed_time()
            self._spawn_due(now)
            if self.sim.iteration_count() % STAIR_UPDATE_EVERY == 0:
                self._stair_speeds()
            if self.sim.agent_count() > 0 or self.next < self.arrivals.size:
                last_busy = now
            elif now >= last_busy + TAIL_S and self.sim.iteration_count() % FRAME_EVERY == 0:
                break
            self.sim.iterate()
            self._forget_removed()
        return round(self.sim.elapsed_time())


# --------------------------------------------------------------------------------------------- measurement
def measure(trajectory_file: Path, last_s: int) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Per counter: (count [person], PedPy classic density [person m-2], area [m2]) for seconds 0..last_s."""
    traj = pedpy.load_trajectory_from_jupedsim_sqlite(trajectory_file=trajectory_file)
    if abs(traj.frame_rate - 1.0) > 1e-9:
        raise RuntimeError(f"expected one frame per second, got {traj.frame_rate} fps")
    walkable = pedpy.WalkableArea(shapely.get_coordinates(to_local(walkable_polygon()).exterior))
    out = {}
    for c in COUNTERS:
        area = pedpy.MeasurementArea(shapely.get_coordinates(to_local(c.polygon()).exterior)[:-1])
        if not walkable.polygon.covers(area.polygon):
            raise RuntimeError(f"{c.device}: measurement area not inside the walkable area")
        dens = pedpy.compute_classic_density(traj_data=traj, measurement_area=area)
        rho = dens.set_index("frame")["density"].reindex(range(last_s + 1), fill_value=0.0).to_numpy(float)
        count = np.rint(rho * area.area)
        if np.abs(rho * area.area - count).max() > 1e-6:
            raise RuntimeError(f"{c.device}: PedPy density x area is not a whole count")
        out[c.device] = (count.astype(np.int64), rho, round(float(area.area), AREA_DIGITS))
    return out


# --------------------------------------------------------------------------------------------- outputs
def write_counts(path: Path, measured: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> None:
    """``counts.csv``: t_s, device, count [person], density_person_m2 = count / walkable area [person m-2]."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["t_s", "device", "count", "density_person_m2"])
        n = len(next(iter(measured.values()))[0])
        for t in range(n):
            for device, (count, _, area) in measured.items():
                w.writerow([t, device, int(count[t]), repr(float(count[t]) / area)])


def lonlat_ring(poly: Polygon) -> list[list[float]]:
    """Exterior ring of an EPSG:4549 polygon as CGCS2000 lon/lat, counter-clockwise, 1e-9 deg (0.1 mm)."""
    poly = shapely.geometry.polygon.orient(poly, 1.0)
    xy = np.asarray(poly.exterior.coords)
    lon, lat = geo.to_lonlat(xy[:, 0], xy[:, 1], CRS)
    return [[round(float(a), 9), round(float(b), 9)] for a, b in zip(lon, lat, strict=True)]


def counters_geojson(areas: dict[str, float]) -> dict:
    """The counters as a registry FeatureCollection (``ingest.registry``), with the case as metadata."""
    features = [{"type": "Feature",
                 "geometry": {"type": "Polygon", "coordinates": [lonlat_ring(c.polygon())]},
                 "properties": {"id": c.device, "kind": "crowd", "quantities": ["count"], "name": c.name,
                                "coverage": "polygon", "technology": "overhead stereo camera counter (truth case)",
                                "walkable_area_m2": areas[c.device]}} for c in COUNTERS]
    return {"type": "FeatureCollection", "name": "truth_crowd_counters",
            "crs_note": "CGCS2000 lon/lat (= WGS84 here, twin.district.geo); RFC 7946 axis order",
            "case": {"place": "Lujiazui skywalk stair to Metro Line 2 Exit 1, Pudong",
                     "generator": "tests/truth/crowd/generate.py", "jupedsim": jps.__version__,
                     "pedpy": pedpy.__version__, "seed": SEED, "grid_crs": CRS,
                     "walkable_area_wkt": shapely.to_wkt(walkable_polygon(), rounding_precision=3)},
            "features": features}


def summary(measured: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> list[str]:
    """One line per counter: area, peak density and when it first reached 2, 4 and 5 person/m2."""
    lines = []
    for device, (count, _, area) in measured.items():
        rho = count / area  # as written to counts.csv
        firsts = []
        for thr in (2.0, 4.0, 5.0):
            hit = np.flatnonzero(rho >= thr)
            firsts.append(f">={thr:g}: {int(hit[0]) if hit.size else '-'} s")
        lines.append(f"{device}: area {area:.3f} m2, peak {rho.max():.2f} person/m2 ({int(count.max())} people) "
                     f"at {int(np.argmax(rho))} s; first " + ", ".join(firsts))
    return lines


def main(argv: list[str] | None = None) -> int:
    """Simulate, measure and write the outputs; prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: next to this script)")
    parser.add_argument("--keep-trajectory", type=Path, help="also keep the JuPedSim sqlite trajectories here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    walkable = walkable_polygon()
    check_counters(walkable)
    with tempfile.TemporaryDirectory() as tmp:
        traj_file = args.keep_trajectory or Path(tmp) / "trajectories.sqlite"
        run = Run(traj_file)
        last_s = run.run()
        sim_s = time.perf_counter() - started
        measured = measure(traj_file, last_s)
    args.out.mkdir(parents=True, exist_ok=True)
    write_counts(args.out / "counts.csv", measured)
    doc = counters_geojson({d: m[2] for d, m in measured.items()})
    (args.out / "counters.geojson").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    wait = np.asarray(run.entered)
    print(f"jupedsim {jps.__version__}, pedpy {pedpy.__version__}; walkable area {walkable.area:.1f} m2")
    print(f"{run.arrivals.size} people, {last_s} s simulated; entry wait max {wait.max():.1f} s; "
          f"simulation {sim_s:.0f} s, total {time.perf_counter() - started:.0f} s")
    print("\n".join(summary(measured)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
