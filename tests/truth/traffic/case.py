"""The SUMO traffic truth case of issue 15 as the tests read it (no SUMO needed).

``generate.py`` (next to this file) simulated the People's Square drive network with SUMO in two runs,
free flow and gridlock; its outputs are kept here (see README.md):

* `edges` reads ``edges.geojson.gz``: per SUMO edge its lon/lat LineString and properties (OSM way ids,
  speed limit, length, tunnel...);
* `edgedata` reads ``edgedata.csv.gz``: SUMO's edgeData per edge and 5-minute interval (space-mean
  speed, sampled seconds, density, entered, left) with the probes' traversals;
* `probe_rows` reads ``probes_{run}.csv.gz``: ``(t, device, sentence)`` rows; `payloads` groups them
  into the MQTT messages a terminal sends (one payload per device and epoch, CR/LF separated) with
  their topic (docs/contract/mqtt.md: ``city/beidou/{device}``);
* `probes` reads ``probes.csv`` (one row per probe: run, device, SUMO vehicle, talker, period, phase);
  `registry_features` gives them as ``vehicle`` registry features (ingest.registry);
* `summary` reads ``summary.json``, the generator's figures.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = ("freeflow", "gridlock")
EDGES = HERE / "edges.geojson.gz"
EDGEDATA = HERE / "edgedata.csv.gz"
PROBES = HERE / "probes.csv"
SUMMARY = HERE / "summary.json"
INTERVAL_S = 300
"""edgeData and evaluation window. [s]"""
WARMUP_S = 300
MEASURE_S = 1800
T0 = 1773792000
"""Unix time of simulation second 0: 2026-03-18 00:00:00 UTC (08:00 Beijing time). [s]"""
MIN_TRAVERSALS = 3
"""Issue 15: link-windows are evaluated where at least this many probes traversed the link."""


@dataclass(frozen=True)
class EdgeWindow:
    """SUMO's edgeData of one edge in one interval (``begin_s``/``end_s`` in simulation seconds).

    ``speed_m_s`` is SUMO's space-mean speed (travelled distance / sampled seconds; NaN when SUMO gave
    none); ``probe_speed_m_s`` the probes' complete traversals, sum of lengths / sum of times (NaN if none).
    """

    run: str
    begin_s: int
    end_s: int
    edge: str
    speed_m_s: float
    sampled_seconds: float
    density_veh_km: float
    entered: int
    left: int
    probe_traversals: int
    probe_speed_m_s: float

    @property
    def speed_kmh(self) -> float:
        return self.speed_m_s * 3.6

    @property
    def t_begin(self) -> float:
        """Unix time of the interval's start. [s]"""
        return T0 + self.begin_s


def _f(s: str) -> float:
    return float(s) if s else math.nan


def edges(path: Path = EDGES) -> dict[str, dict]:
    """``edges.geojson.gz`` as {edge id: GeoJSON feature}."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    return {ft["properties"]["id"]: ft for ft in doc["features"]}


def edgedata(run: str | None = None, path: Path = EDGEDATA) -> list[EdgeWindow]:
    """``edgedata.csv.gz`` rows (of one run, or all)."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            if run is not None and r["run"] != run:
                continue
            out.append(
                EdgeWindow(
                    r["run"],
                    int(r["begin_s"]),
                    int(r["end_s"]),
                    r["edge"],
                    _f(r["speed_m_s"]),
                    float(r["sampled_seconds"]),
                    _f(r["density_veh_km"]),
                    int(r["entered"]),
                    int(r["left"]),
                    int(r["probe_traversals"]),
                    _f(r["probe_speed_m_s"]),
                )
            )
    return out


def probe_file(run: str) -> Path:
    return HERE / f"probes_{run}.csv.gz"


def probe_rows(run: str) -> Iterator[tuple[int, str, str]]:
    """``(t [unix s], device, sentence)`` in file order (by time, then device)."""
    with gzip.open(probe_file(run), "rt", encoding="ascii", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for t, device, s in reader:
            yield int(t), device, s


def payloads(run: str, prefix: str = "city/") -> Iterator[tuple[int, str, bytes]]:
    """``(t, topic, payload)``: the sentences of one device and second as one CR/LF-terminated payload."""
    key, lines = None, []
    for t, device, s in probe_rows(run):
        if (t, device) != key:
            if key is not None:
                yield key[0], f"{prefix}beidou/{key[1]}", ("\r\n".join(lines) + "\r\n").encode("ascii")
            key, lines = (t, device), []
        lines.append(s)
    if key is not None:
        yield key[0], f"{prefix}beidou/{key[1]}", ("\r\n".join(lines) + "\r\n").encode("ascii")


def probes(run: str | None = None, path: Path = PROBES) -> list[dict]:
    """``probes.csv`` rows (``period_s`` and ``phase_s`` as int)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if run is None or r["run"] == run]
    for r in rows:
        r["period_s"], r["phase_s"] = int(r["period_s"]), int(r["phase_s"])
    return rows


def registry_features(run: str | None = None) -> list[dict]:
    """The probes as device registry features (kind ``vehicle``, no geometry), like data/bund's vehicles."""
    return [
        {
            "type": "Feature",
            "geometry": None,
            "properties": {
                "id": p["device"],
                "kind": "vehicle",
                "quantities": ["position"],
                "name": f"SUMO probe {p['sumo_id']} ({p['run']})",
                "fleet": "truth-sumo",
            },
        }
        for p in probes(run)
    ]


def summary(path: Path = SUMMARY) -> dict:
    """``summary.json``: the generator's counts and figures."""
    return json.loads(path.read_text(encoding="utf-8"))
