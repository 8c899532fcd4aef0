"""Generate the SUMO traffic truth case of issue 15: People's Square road links, free flow and gridlock.

Re-run (from the repository root; a few minutes on one core)::

    pip install -r tests/truth/traffic/requirements-truth.txt
    nice -n 19 python tests/truth/traffic/generate.py [--seed 15] [--work DIR]

Pinned version (also in ``requirements-truth.txt``; NOT a dependency of the project, the tests read only
the outputs kept next to this script): eclipse-sumo==1.28.0 (with sumolib and traci 1.28.0).

What it does
------------
1. **Network.** ``netconvert`` imports ``peoples_square_drive.osm.gz`` (a gzip of the shared
   ``shanghai_peoples_square_drive.osm``, OSMnx 2.0.7 export, (c) OpenStreetMap contributors, ODbL 1.0) with
   ``NETCONVERT_OPTIONS``: passenger-car edges only, geometry nodes removed (edges run between
   junctions), OSM traffic signals and joined junction clusters (Shanghai's wide intersections are
   several OSM nodes), guessed on/off ramps, no U-turns except at dead ends, and every OSM tag kept as an
   edge ``param`` (``--osm.all-attributes``) with the OSM way id(s) as the lanes' ``origId``. Tunnel
   ways (``tunnel=yes``) are kept as edges of their own (``--geometry.remove.keep-edges.explicit``),
   so that no edge is part tunnel, part surface: without it netconvert merges portal ramps into the
   tunnel edges.
2. **Demand.** Per run, ``randomTrips.py`` (seeded) draws trips departing every ``period`` seconds from 0
   to ``END_S`` (with ``--fringe-factor`` so that through traffic enters at the network's edge) and
   ``duarouter`` (seeded) routes them on the empty network. ``RUNS``: free flow (low demand) and gridlock
   (high demand).
3. **Simulation.** ``sumo`` (seeded, 1 s steps) from 0 to ``END_S``: ``WARMUP_S`` (5 min) warm-up, then
   ``MEASURE_S`` (30 min) measured. A share ``probe_share`` of the vehicles (40 % in free flow, where vehicles
   are few, 10 % in gridlock) carry an FCD device
   (``--device.fcd.probability``, deterministic): these are the probes; the FCD output gives their
   position, speed, angle and lane every second. Vehicles stuck for ``--time-to-teleport`` (SUMO's
   default 300 s) are teleported, as SUMO does by default.
4. **Truth.** An ``edgeData`` meandata (``period`` 300 s from ``WARMUP_S``) gives per edge and 5-minute
   interval ``speed`` (m/s; SUMO: "the mean speed on the edge/lane within the reported interval",
   computed as travelled distance / ``sampledSeconds``, i.e. the space-mean speed: total distance over
   total time of all vehicles on the edge), ``sampledSeconds`` (vehicle-seconds on the edge),
   ``density`` (veh/km), ``entered`` and ``left``. Edge-intervals without any vehicle are left out
   (``excludeEmpty``). For each edge-interval the generator adds the probes' complete traversals (see
   ``traversals``): their number (by exit time) and their space-mean speed, sum of edge lengths over sum
   of times on the edge (what a perfect probe estimator would see).
5. **Probe feed.** For each probe, NMEA 0183 sentences as a Beidou terminal sends them on
   ``city/beidou/{device}`` (docs/contract/mqtt.md): every ``period`` s (5 s for half of the probes,
   10 s for the other half, a random phase each), from the FCD samples at those seconds: RMC plus GGA
   (two probes in three) or RMC plus GNS (one in three), talker GB, BD or GN (random per probe).
   Position: SUMO's x/y plus Gaussian noise of ``NOISE_M`` (2 m) per axis, converted to lon/lat with
   the projection of the net's ``location`` (sumolib ``convertXY2LonLat``; WGS84, which CGCS2000 equals
   to a few cm). Speed over ground in knots (SUMO speed plus N(0, 0.1 m/s), at least 0), course =
   SUMO's angle (degrees clockwise from north) plus N(0, 1 deg) when moving. While the probe is on a
   tunnel edge (or on a junction between two tunnel edges) there is no fix: RMC status V, GGA quality 0,
   GNS mode N, empty position, speed and course. Altitude (GGA/GNS field 9, above the geoid):
   ``GROUND_ALT_M`` (4 m) + the height of the road under the vehicle (``edge_heights``: elevated decks, OSM
   ``bridge=yes`` trunk ways, ``DECK_M`` 12 m up; their ramps climb linearly between the ground and the deck) +
   Gaussian noise of ``ALT_NOISE_M`` (10 m), drawn from a generator of its own (``--seed`` and the run), so that
   every other output is what it was without altitudes.

Outputs, written next to this script and kept in the repository (small, gzip with no timestamp):

* ``edges.geojson.gz``: every (non-internal) SUMO edge as a LineString in lon/lat, with ``id``, ``from``,
  ``to``, ``osm_way_ids``, ``name``, ``highway``, ``lanes``, ``speed_limit_kmh``, ``length_m``,
  ``tunnel``, ``bridge``;
* ``edgedata.csv.gz``: ``run,begin_s,end_s,edge,speed_m_s,sampled_seconds,density_veh_km,entered,left,
  probe_traversals,probe_speed_m_s``;
* ``probes_freeflow.csv.gz``, ``probes_gridlock.csv.gz``: ``t,device,sentence`` (unix time [s], device id,
  one NMEA sentence without CR/LF); the sentences of one device and time form one MQTT payload;
* ``probes.csv``: ``run,device,sumo_id,talker,period_s,phase_s,sentences``;
* ``summary.json``: the counts and figures printed at the end (also in README.md).

Time: simulation second 0 is ``T0`` (2026-03-18 00:00:00 UTC, 08:00 Beijing time, a Wednesday morning).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from calendar import timegm
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OSM = HERE / "peoples_square_drive.osm.gz"
SEED = 15
T0 = timegm((2026, 3, 18, 0, 0, 0))
"""Unix time of simulation second 0 (08:00 Beijing time). [s]"""
WARMUP_S = 300
MEASURE_S = 1800
END_S = WARMUP_S + MEASURE_S
INTERVAL_S = 300
"""edgeData aggregation period. [s]"""
NOISE_M = 2.0
"""Position noise, standard deviation per axis. [m]"""
SPEED_NOISE_M_S = 0.1
COURSE_NOISE_DEG = 1.0
GROUND_ALT_M = 4.0
"""Altitude of the ground above the geoid (People's Square is 3-5 m above the Wusong datum) [m]."""
DECK_M = 12.0
"""Height of the elevated roads' decks above the ground (Yan'an and North-South Elevated Roads) [m]."""
ALT_NOISE_M = 10.0
"""Vertical fix noise, standard deviation (single-frequency GNSS: about twice the horizontal in streets) [m]."""
PERIODS_S = (5, 10)
TALKERS = ("GB", "BD", "GN")
KNOT_M_S = 1852.0 / 3600.0

RUNS = {
    # randomTrips: one trip every `period` s over the whole run; fringe factor: trips start/end at the
    # network's fringe this many times more often than inside (through traffic on the arterials)
    # probe_share: share of vehicles with an FCD device (the probes); higher in free flow (few vehicles),
    # lower in gridlock (small feed)
    "freeflow": {"period": 6.0, "fringe_factor": 5.0, "probe_share": 0.4},
    "gridlock": {"period": 0.5, "fringe_factor": 5.0, "probe_share": 0.1},
}

NETCONVERT_OPTIONS = [
    "--keep-edges.by-vclass",
    "passenger",
    "--remove-edges.isolated",
    "--geometry.remove",
    "--junctions.join",
    "--tls.guess-signals",
    "--tls.discard-simple",
    "--tls.join",
    "--ramps.guess",
    "--no-turnarounds.except-deadend",
    "--osm.all-attributes",
    "--output.original-names",
]
TYPEMAPS = ("osmNetconvert.typ.xml", "osmNetconvertUrbanDe.typ.xml")
"""SUMO's OSM type maps (data/typemap): the default one, overlaid with the urban one (urban speeds where OSM
has no maxspeed: 50 km/h on trunk, primary, secondary and tertiary roads and their links) [design]."""
RANDOMTRIPS_OPTIONS = [
    "--min-distance",
    "300",
    "--vclass",
    "passenger",
    "--trip-attributes",
    'departLane="best" departSpeed="max"',
]
SUMO_OPTIONS = [
    "--step-length",
    "1",
    "--no-step-log",
    "--no-warnings",
    "--duration-log.disable",
    "--device.fcd.deterministic",
]


def run(cmd: list[str], cwd: Path) -> None:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True)


def tunnel_ways(osm: Path) -> list[str]:
    """OSM ids of the ways tagged tunnel=yes."""
    with gzip.open(osm) as f:
        root = ET.parse(f).getroot()
    return sorted(
        w.get("id")
        for w in root.iter("way")
        if any(t.get("k") == "tunnel" and t.get("v") == "yes" for t in w.iter("tag"))
    )


def build_net(work: Path) -> Path:
    net = work / "net.xml"
    keep = []
    for way in tunnel_ways(OSM):  # netconvert names OSM edges wayid, wayid#k, -wayid, -wayid#k
        for sign in ("", "-"):
            keep += [f"{sign}{way}"] + [f"{sign}{way}#{k}" for k in range(10)]
    import sumo

    types = ",".join(str(Path(sumo.SUMO_HOME) / "data" / "typemap" / t) for t in TYPEMAPS)
    run(
        [
            "netconvert",
            "--osm-files",
            OSM,
            "-o",
            net,
            *NETCONVERT_OPTIONS,
            "--type-files",
            types,
            "--geometry.remove.keep-edges.explicit",
            ",".join(keep),
            "--no-warnings",
        ],
        work,
    )
    return net


def edge_table(net) -> dict[str, dict]:
    """Per normal edge: properties for edges.geojson (and tunnel flag)."""
    out = {}
    for e in net.getEdges():
        ways: list[str] = []
        for lane in e.getLanes():
            for w in (lane.getParam("origId") or "").split():
                if w not in ways:
                    ways.append(w)
        lon, lat = net.convertXY2LonLat(*np.asarray(e.getShape(), dtype=float).T)
        typ = e.getType() or ""
        out[e.getID()] = {
            "id": e.getID(),
            "from": e.getFromNode().getID(),
            "to": e.getToNode().getID(),
            "osm_way_ids": ways,
            "name": e.getName() or "",
            "highway": e.getParam("highway") or typ.removeprefix("highway."),
            "lanes": e.getLaneNumber(),
            "speed_limit_kmh": round(e.getSpeed() * 3.6, 2),
            "length_m": round(e.getLength(), 2),
            "tunnel": e.getParam("tunnel") == "yes",
            "bridge": e.getParam("bridge") == "yes",
            "coords": [[round(float(x), 7), round(float(y), 7)] for x, y in zip(lon, lat, strict=True)],
        }
    return out


def edge_heights(net) -> dict[str, tuple[float, float]]:
    """Per normal edge: its height above the ground at its start and end [m]. Elevated decks (OSM ``bridge=yes`` on
    ``highway=trunk``) are ``DECK_M`` up, other edges (tunnels included) 0; a bridge ramp (``trunk_link``) climbs
    linearly: a node only ramps touch is at ``DECK_M`` x d_ground / (d_ground + d_deck), with the distances along
    the ramps to the nearest node a surface edge touches and to the nearest a deck touches."""
    import networkx as nx

    def kind(e) -> str:
        if e.getParam("bridge") != "yes":
            return "ground"
        return "ramp" if (e.getParam("highway") or "").endswith("_link") else "deck"

    touch: dict[str, set[str]] = defaultdict(set)
    ramps = nx.Graph()
    for e in net.getEdges():
        k = kind(e)
        for n in (e.getFromNode().getID(), e.getToNode().getID()):
            touch[n].add(k)
        if k == "ramp":
            ramps.add_edge(e.getFromNode().getID(), e.getToNode().getID(), weight=e.getLength())

    def fixed(n: str) -> float | None:
        return DECK_M if "deck" in touch[n] else 0.0 if "ground" in touch[n] else None

    height = {n: h for n in touch if (h := fixed(n)) is not None}
    free = [n for n in ramps.nodes if n not in height]
    if free:
        d = {lvl: nx.multi_source_dijkstra_path_length(ramps, [n for n in ramps.nodes if height.get(n) == lvl])
             for lvl in (0.0, DECK_M) if any(height.get(n) == lvl for n in ramps.nodes)}
        for n in free:
            d0, d1 = d.get(0.0, {}).get(n, math.inf), d.get(DECK_M, {}).get(n, math.inf)
            height[n] = DECK_M if math.isinf(d0) else 0.0 if math.isinf(d1) else DECK_M * d0 / (d0 + d1)
    out = {}
    for e in net.getEdges():
        k = kind(e)
        a, b = height[e.getFromNode().getID()], height[e.getToNode().getID()]
        out[e.getID()] = (DECK_M, DECK_M) if k == "deck" else (a, b) if k == "ramp" else (0.0, 0.0)
    return out


def heights_along(tr: dict[str, list], sel: np.ndarray, net, heights: dict[str, tuple[float, float]]) -> np.ndarray:
    """Height above the ground [m] of a trace's samples ``sel`` (sorted) on their edges (linear between the edge's
    ends, by the position projected on the edge's shape); on a junction, the height at the end of the last edge
    before it."""
    import shapely

    out = np.zeros(sel.size)
    wanted = {int(i): j for j, i in enumerate(sel)}
    last = 0.0
    for i in range(int(sel.max()) + 1 if sel.size else 0):
        e = lane_edge(tr["lane"][i])
        if not e.startswith(":") and e in heights:
            h0, h1 = heights[e]
            here = h0
            if h0 != h1 and i in wanted:
                line = shapely.LineString(net.getEdge(e).getShape())
                f = line.line_locate_point(shapely.Point(tr["x"][i], tr["y"][i]), normalized=True)
                here = h0 + (h1 - h0) * f
            last = h1
        else:
            here = last
        if i in wanted:
            out[wanted[i]] = here
    return out


def write_edges_geojson(edges: dict[str, dict], path: Path) -> None:
    feats = []
    for e in edges.values():
        props = {k: v for k, v in e.items() if k != "coords"}
        feats.append(
            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": e["coords"]}, "properties": props}
        )
    doc = {
        "type": "FeatureCollection",
        "name": "sumo_edges_peoples_square",
        "attribution": "(c) OpenStreetMap contributors, ODbL 1.0; edges by SUMO netconvert",
        "features": feats,
    }
    write_gz(path, json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


def write_gz(path: Path, text: str) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=9) as f:
        f.write(text.encode("utf-8"))


def simulate(name: str, cfg: dict, net: Path, work: Path, seed: int) -> dict[str, Path]:
    """randomTrips, duarouter, sumo for one run; returns the output paths."""
    import sumo

    d = work / name
    d.mkdir(exist_ok=True)
    tools = Path(sumo.SUMO_HOME) / "tools"
    run(
        [
            sys.executable,
            tools / "randomTrips.py",
            "-n",
            net,
            "-o",
            d / "trips.xml",
            "--seed",
            seed,
            "-b",
            0,
            "-e",
            END_S,
            "-p",
            cfg["period"],
            "--fringe-factor",
            cfg["fringe_factor"],
            "--prefix",
            name[0],
            *RANDOMTRIPS_OPTIONS,
        ],
        d,
    )
    run(
        [
            "duarouter",
            "-n",
            net,
            "--route-files",
            d / "trips.xml",
            "-o",
            d / "routes.rou.xml",
            "--seed",
            seed,
            "--ignore-errors",
            "--no-warnings",
            "--no-step-log",
        ],
        d,
    )
    (d / "edgedata.add.xml").write_text(
        f'<additional>\n  <edgeData id="5min" period="{INTERVAL_S}" begin="{WARMUP_S}" end="{END_S}" '
        f'file="edgedata.xml" excludeEmpty="true"/>\n</additional>\n'
    )
    run(
        [
            "sumo",
            "-n",
            net,
            "-r",
            d / "routes.rou.xml",
            "-a",
            d / "edgedata.add.xml",
            "--seed",
            seed,
            "--begin",
            0,
            "--end",
            END_S,
            "--device.fcd.probability",
            cfg["probe_share"],
            "--fcd-output",
            d / "fcd.xml.gz",
            "--fcd-output.attributes",
            "x,y,angle,speed,lane",
            "--statistic-output",
            d / "stats.xml",
            *SUMO_OPTIONS,
        ],
        d,
    )
    return {"fcd": d / "fcd.xml.gz", "edgedata": d / "edgedata.xml", "stats": d / "stats.xml"}


def read_fcd(path: Path) -> dict[str, dict[str, list]]:
    """Per vehicle: lists t, x, y, angle, speed, lane (time order)."""
    traces: dict[str, dict[str, list]] = {}
    with gzip.open(path) as f:
        t = 0.0
        for event, el in ET.iterparse(f, events=("start", "end")):
            if event == "start" and el.tag == "timestep":
                t = float(el.get("time"))
            elif event == "end" and el.tag == "vehicle":
                tr = traces.setdefault(el.get("id"), {k: [] for k in ("t", "x", "y", "angle", "speed", "lane")})
                tr["t"].append(t)
                tr["x"].append(float(el.get("x")))
                tr["y"].append(float(el.get("y")))
                tr["angle"].append(float(el.get("angle")))
                tr["speed"].append(float(el.get("speed")))
                tr["lane"].append(el.get("lane"))
                el.clear()
            elif event == "end" and el.tag == "timestep":
                el.clear()
    return traces


def lane_edge(lane: str) -> str:
    return lane.rsplit("_", 1)[0]


def in_tunnel(lanes: list[str], tunnel_edges: set[str]) -> np.ndarray:
    """Per sample: on a tunnel edge, or on a junction between two tunnel edges (by the trace's order)."""
    edges = [lane_edge(x) for x in lanes]
    n = len(edges)
    normal = [not e.startswith(":") for e in edges]
    prev_t = [False] * n
    nxt_t = [False] * n
    last = False
    for i in range(n):
        if normal[i]:
            last = edges[i] in tunnel_edges
        prev_t[i] = last
    last = False
    for i in range(n - 1, -1, -1):
        if normal[i]:
            last = edges[i] in tunnel_edges
        nxt_t[i] = last
    return np.array([(edges[i] in tunnel_edges) if normal[i] else (prev_t[i] and nxt_t[i]) for i in range(n)])


def traversals(tr: dict[str, list], edges: dict[str, dict]) -> list[tuple[str, float, float]]:
    """Complete traversals of normal edges by one vehicle: (edge, exit time [s], time on edge [s]).

    A visit is the run of consecutive 1 s samples on one edge; it is complete when the vehicle was seen
    one second before it on another edge or junction and one second after it on another (so departures,
    arrivals and teleports do not count). Time on the edge = number of samples x 1 s.
    """
    t = tr["t"]
    es = [lane_edge(x) for x in tr["lane"]]
    out = []
    i, n = 0, len(es)
    while i < n:
        j = i
        while j + 1 < n and es[j + 1] == es[i] and t[j + 1] - t[j] == 1.0:
            j += 1
        e = es[i]
        if (
            not e.startswith(":")
            and e in edges
            and i > 0
            and j + 1 < n
            and t[i] - t[i - 1] == 1.0
            and t[j + 1] - t[j] == 1.0
        ):
            out.append((e, t[j], float(j - i + 1)))
        i = j + 1
    return out


def dm(value: float, deg_digits: int) -> str:
    a = abs(value)
    deg = int(a)
    minutes = (a - deg) * 60.0
    if round(minutes, 5) >= 60.0:
        deg, minutes = deg + 1, 0.0
    return f"{deg:0{deg_digits}d}{minutes:08.5f}"


def checksum(body: str) -> str:
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return f"{c:02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}"


def nmea_epoch(
    talker: str,
    kinds: str,
    t_unix: int,
    lon: float,
    lat: float,
    speed_m_s: float,
    course: float,
    fix: bool,
    nsat: int,
    hdop: float,
    alt: float = GROUND_ALT_M,
) -> list[str]:
    """The sentences of one epoch (RMC first, then GGA or GNS)."""
    st = time.gmtime(t_unix)
    hms = f"{st.tm_hour:02d}{st.tm_min:02d}{st.tm_sec:02d}.00"
    date = f"{st.tm_mday:02d}{st.tm_mon:02d}{st.tm_year % 100:02d}"
    out = []
    if fix:
        pos = f"{dm(lat, 2)},{'N' if lat >= 0 else 'S'},{dm(lon, 3)},{'E' if lon >= 0 else 'W'}"
        out.append(sentence(f"{talker}RMC,{hms},A,{pos},{speed_m_s / KNOT_M_S:.2f},{course:.1f},{date},,,A,V"))
        if "GGA" in kinds:
            out.append(sentence(f"{talker}GGA,{hms},{pos},1,{nsat:02d},{hdop:.1f},{alt:.1f},M,8.3,M,,"))
        if "GNS" in kinds:
            mode = "AAAA" if talker == "GN" else "A"
            out.append(sentence(f"{talker}GNS,{hms},{pos},{mode},{nsat:02d},{hdop:.1f},{alt:.1f},8.3,,,V"))
    else:
        out.append(sentence(f"{talker}RMC,{hms},V,,,,,,,{date},,,N,V"))
        if "GGA" in kinds:
            out.append(sentence(f"{talker}GGA,{hms},,,,,0,00,99.9,,M,,M,,"))
        if "GNS" in kinds:
            mode = "NNNN" if talker == "GN" else "N"
            out.append(sentence(f"{talker}GNS,{hms},,,,,{mode},00,,,,,,V"))
    return out


def probe_feed(name: str, traces: dict, net, edges: dict, rng: np.random.Generator, alt_rng: np.random.Generator):
    """NMEA rows (t, device, sentence) and probe metadata rows for one run, plus fix counts. ``alt_rng`` draws
    the altitude noise only (``rng`` draws the same numbers as before altitudes were simulated)."""
    tunnel_edges = {k for k, e in edges.items() if e["tunnel"]}
    heights = edge_heights(net)
    ids = sorted(traces, key=lambda v: (traces[v]["t"][0], v))
    periods = np.array([PERIODS_S[k % 2] for k in range(len(ids))])
    rng.shuffle(periods)
    rows, meta = [], []
    fixes = nofix = 0
    for k, vid in enumerate(ids):
        tr = traces[vid]
        device = f"ps-{name[:2]}-{k + 1:04d}"
        talker = TALKERS[int(rng.integers(len(TALKERS)))]
        kinds = "RMC+GNS" if rng.random() < 1 / 3 else "RMC+GGA"
        period = int(periods[k])
        phase = int(rng.integers(period))
        nsat = int(rng.integers(12, 25))
        meta.append([name, device, vid, talker, period, phase, kinds])
        t = np.asarray(tr["t"])
        sel = np.flatnonzero((t.astype(int) - phase) % period == 0)
        if sel.size == 0:
            continue
        tun = in_tunnel(tr["lane"], tunnel_edges)[sel]
        x = np.asarray(tr["x"])[sel] + rng.normal(0.0, NOISE_M, sel.size)
        y = np.asarray(tr["y"])[sel] + rng.normal(0.0, NOISE_M, sel.size)
        lon, lat = net.convertXY2LonLat(x, y)
        spd = np.maximum(np.asarray(tr["speed"])[sel] + rng.normal(0.0, SPEED_NOISE_M_S, sel.size), 0.0)
        crs = (np.asarray(tr["angle"])[sel] + rng.normal(0.0, COURSE_NOISE_DEG, sel.size)) % 360.0
        hdop = rng.uniform(0.6, 1.2, sel.size)
        alt = GROUND_ALT_M + heights_along(tr, sel, net, heights) + alt_rng.normal(0.0, ALT_NOISE_M, sel.size)
        for j in range(sel.size):
            tu = T0 + int(t[sel[j]])
            fix = not tun[j]
            fixes += fix
            nofix += not fix
            course = float(crs[j]) if spd[j] > 0.5 else float(tr["angle"][sel[j]]) % 360.0
            if round(course, 1) >= 360.0:
                course = 0.0
            for s in nmea_epoch(
                talker, kinds, tu, float(lon[j]), float(lat[j]), float(spd[j]), course, fix, nsat, float(hdop[j]),
                float(alt[j]),
            ):
                rows.append((tu, device, s))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows, meta, fixes, nofix


def read_edgedata(path: Path) -> list[dict]:
    out = []
    for interval in ET.parse(path).getroot().iter("interval"):
        b, e = float(interval.get("begin")), float(interval.get("end"))
        for ed in interval.iter("edge"):
            out.append(
                {
                    "begin_s": int(b),
                    "end_s": int(e),
                    "edge": ed.get("id"),
                    "speed_m_s": float(ed.get("speed", "nan")),
                    "sampled_seconds": float(ed.get("sampledSeconds", 0.0)),
                    "density_veh_km": float(ed.get("density", "nan")),
                    "entered": int(float(ed.get("entered", 0))),
                    "left": int(float(ed.get("left", 0))),
                }
            )
    return out


def stats(path: Path) -> dict:
    root = ET.parse(path).getroot()
    v = root.find("vehicles").attrib
    tele = root.find("teleports").attrib
    return {
        "loaded": int(v["loaded"]),
        "inserted": int(v["inserted"]),
        "running_at_end": int(v["running"]),
        "waiting_at_end": int(v["waiting"]),
        "teleports": int(tele["total"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--work", type=Path, help="keep SUMO's files here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    import sumolib

    work = args.work or Path(tempfile.mkdtemp(prefix="truth-traffic-"))
    work.mkdir(parents=True, exist_ok=True)
    out = args.out
    try:
        net_path = build_net(work)
        net = sumolib.net.readNet(str(net_path))
        edges = edge_table(net)
        write_edges_geojson(edges, out / "edges.geojson.gz")
        summary: dict = {
            "seed": args.seed,
            "sumo_version": sumolib_version(),
            "edges": len(edges),
            "tunnel_edges": sum(e["tunnel"] for e in edges.values()),
            "traffic_lights": len(net.getTrafficLights()),
            "runs": {},
        }
        ed_rows = []
        meta_rows = []
        rng_master = np.random.default_rng(args.seed)
        for i_run, (name, cfg) in enumerate(RUNS.items()):
            paths = simulate(name, cfg, net_path, work, args.seed)
            traces = read_fcd(paths["fcd"])
            rows, meta, fixes, nofix = probe_feed(
                name, traces, net, edges, np.random.default_rng(rng_master.integers(2**32)),
                np.random.default_rng((args.seed, 1, i_run)),
            )
            meta_rows += meta
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["t", "device", "sentence"])
            w.writerows(rows)
            write_gz(out / f"probes_{name}.csv.gz", buf.getvalue())
            # probe traversals per edge and window (by exit time)
            trav = defaultdict(list)
            for tr in traces.values():
                for e, t_exit, dt in traversals(tr, edges):
                    if WARMUP_S <= t_exit < END_S:
                        b = WARMUP_S + int((t_exit - WARMUP_S) // INTERVAL_S) * INTERVAL_S
                        trav[(e, b)].append(dt)
            ed = read_edgedata(paths["edgedata"])
            for r in ed:
                dts = trav.get((r["edge"], r["begin_s"]), [])
                r["probe_traversals"] = len(dts)
                r["probe_speed_m_s"] = (len(dts) * edges[r["edge"]]["length_m"] / sum(dts)) if dts else math.nan
                r["run"] = name
            ed_rows += ed
            summary["runs"][name] = run_summary(
                name, cfg, ed, edges, traces, meta, fixes, nofix, rows, stats(paths["stats"]), trav
            )
        cols = [
            "run",
            "begin_s",
            "end_s",
            "edge",
            "speed_m_s",
            "sampled_seconds",
            "density_veh_km",
            "entered",
            "left",
            "probe_traversals",
            "probe_speed_m_s",
        ]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in ed_rows:
            w.writerow([fmt(r[c]) for c in cols])
        write_gz(out / "edgedata.csv.gz", buf.getvalue())
        with open(out / "probes.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["run", "device", "sumo_id", "talker", "period_s", "phase_s", "sentences"])
            w.writerows(meta_rows)
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(summary, indent=1))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def sumolib_version() -> str:
    out = subprocess.run(["sumo", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip()


def run_summary(name, cfg, ed, edges, traces, meta, fixes, nofix, rows, st, trav) -> dict:
    sp = np.array([r["speed_m_s"] for r in ed]) * 3.6
    lim = np.array([edges[r["edge"]]["speed_limit_kmh"] for r in ed])
    rel = sp / lim
    ss = np.array([r["sampled_seconds"] for r in ed])
    n3 = [r for r in ed if r["probe_traversals"] >= 3]
    err = np.array([r["probe_speed_m_s"] - r["speed_m_s"] for r in n3]) * 3.6
    return {
        "demand_period_s": cfg["period"],
        "probe_share": cfg["probe_share"],
        "vehicles": st,
        "probes": len(meta),
        "probes_5s": sum(1 for m in meta if m[4] == 5),
        "probes_10s": sum(1 for m in meta if m[4] == 10),
        "talkers": {t: sum(1 for m in meta if m[3] == t) for t in TALKERS},
        "probes_with_gns": sum(1 for m in meta if "GNS" in m[6]),
        "sentences": len(rows),
        "fixes": int(fixes),
        "tunnel_epochs_without_fix": int(nofix),
        "edge_intervals": len(ed),
        "edges_with_traffic": len({r["edge"] for r in ed}),
        "speed_kmh_percentiles_5_25_50_75_95": [round(float(v), 1) for v in np.nanpercentile(sp, [5, 25, 50, 75, 95])],
        "speed_over_limit_percentiles_5_25_50_75_95": [
            round(float(v), 3) for v in np.nanpercentile(rel, [5, 25, 50, 75, 95])
        ],
        "share_speed_at_least_70pct_limit": round(float(np.nanmean(rel >= 0.7)), 3),
        "share_speed_below_30pct_limit": round(float(np.nanmean(rel < 0.3)), 3),
        "edge_intervals_without_speed": int(np.isnan(sp).sum()),
        "sampled_seconds_weighted_speed_kmh": round(float(np.nansum(sp * ss) / np.sum(ss[~np.isnan(sp)])), 1),
        "edge_intervals_with_3_probe_traversals": len(n3),
        "probe_vs_sumo_speed_kmh_on_those": {
            "mae": round(float(np.mean(np.abs(err))), 2) if len(err) else None,
            "bias": round(float(np.mean(err)), 2) if len(err) else None,
        },
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
