"""The crowd truth case of issue 14 as the tests read it (no JuPedSim or PedPy needed).

``generate.py`` (next to this file) simulated a bottleneck queue with JuPedSim and measured it with PedPy;
its outputs are kept here: ``counts.csv`` (per second and counter: people inside [person] and classic
density [person m-2]) and ``counters.geojson`` (the counters as registry features with
``walkable_area_m2``). This module reads them:

* `load_case` gives a `TruthCase`: one `Series` per counter, the counters' GeoJSON;
* `level_thresholds` gives the crowd raise thresholds by level name, read from
  ``models.config.CrowdConfig.density_raise`` (never copied here);
* `TruthCase.crossings` gives, per counter, the first second at which the true density is at or above a
  threshold (None: never) -- "passes" means reaches, as a level is entered at or above its threshold;
* `registry_with_counters` is the bundled registry plus the counters; `topic` and `senml_pack` build the
  message a counter sends (docs/contract/mqtt.md 3.1).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.registry import Registry, registry_from_geojson
from models.config import CrowdConfig
from twin.district.layers import LEVEL_NAMES
from twin.district.sources import data_dir

HERE = Path(__file__).resolve().parent
COUNTS = HERE / "counts.csv"
COUNTERS = HERE / "counters.geojson"
ISSUE_QUIET_DENSITY = 2.0
"""Issue 14's limit [person m-2]: a counter whose true density never reaches it must see no orange or red."""
RAISE_WINDOW_S = 30.0
"""Issue 14: a level is raised no earlier than the true crossing and no later than this after it. [s]"""


@dataclass(frozen=True)
class Series:
    """One counter's truth, one sample per whole second from 0.

    Attributes
    ----------
    device : str
        Registry id (``truth-crowd-NN``).
    t_s : numpy.ndarray of int64
        Seconds since the start of the case. [s]
    count : numpy.ndarray of int64
        People inside the counter's polygon. [person]
    density : numpy.ndarray of float64
        PedPy classic density, count / walkable area. [person m-2]
    walkable_area_m2 : float
        Walkable area of the counter's polygon. [m2]
    """

    device: str
    t_s: np.ndarray
    count: np.ndarray
    density: np.ndarray
    walkable_area_m2: float

    @property
    def peak(self) -> float:
        """Highest true density. [person m-2]"""
        return float(self.density.max())

    def first_at_or_above(self, threshold: float) -> int | None:
        """First second at which the density is at or above ``threshold`` [person m-2]; None if never. [s]"""
        hit = np.flatnonzero(self.density >= threshold)
        return int(self.t_s[hit[0]]) if hit.size else None


@dataclass(frozen=True)
class TruthCase:
    """The counters' series (by device id, file order) and the counters' GeoJSON FeatureCollection."""

    series: dict[str, Series]
    counters: dict

    @property
    def devices(self) -> tuple[str, ...]:
        """Counter ids, in the order of ``counters.geojson``."""
        return tuple(self.series)

    @property
    def seconds(self) -> np.ndarray:
        """The case's seconds, 0 .. last. [s]"""
        return next(iter(self.series.values())).t_s

    def crossings(self, threshold: float) -> dict[str, int | None]:
        """Per counter, the first second its true density is at or above ``threshold`` [person m-2]."""
        return {d: s.first_at_or_above(threshold) for d, s in self.series.items()}

    def quiet_devices(self, limit: float = ISSUE_QUIET_DENSITY) -> list[str]:
        """Counters whose true density never reaches ``limit`` [person m-2]."""
        return [d for d, s in self.series.items() if s.peak < limit]


def level_thresholds(config: CrowdConfig | None = None) -> dict[str, float]:
    """Crowd raise thresholds by level name (blue, yellow, orange, red) from ``CrowdConfig.density_raise``.
    [person m-2]"""
    raise_at = (config or CrowdConfig()).density_raise
    return {LEVEL_NAMES[level]: float(value) for level, value in enumerate(raise_at, start=1)}


def level_number(name: str) -> int:
    """The level code (1 blue .. 4 red) of a level name (``twin.district.layers.LEVEL_NAMES``)."""
    return next(code for code, n in LEVEL_NAMES.items() if n == name)


def read_counts(path: Path = COUNTS) -> dict[str, dict[str, list]]:
    """``counts.csv`` as columns per device: ``t_s``, ``count``, ``density`` (as parsed: int, int, float)."""
    out: dict[str, dict[str, list]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cols = out.setdefault(row["device"], {"t_s": [], "count": [], "density": []})
            cols["t_s"].append(int(row["t_s"]))
            cols["count"].append(int(row["count"]))
            cols["density"].append(float(row["density_person_m2"]))
    return out


def read_counters(path: Path = COUNTERS) -> dict:
    """``counters.geojson`` as parsed JSON."""
    return json.loads(path.read_text(encoding="utf-8"))


def load_case(counts: Path = COUNTS, counters: Path = COUNTERS) -> TruthCase:
    """The truth case from its two files (see the module docstring)."""
    doc = read_counters(counters)
    cols = read_counts(counts)
    series = {}
    for feature in doc["features"]:
        device = feature["properties"]["id"]
        c = cols[device]
        series[device] = Series(device, np.asarray(c["t_s"], dtype=np.int64), np.asarray(c["count"], dtype=np.int64),
                                np.asarray(c["density"], dtype=np.float64),
                                float(feature["properties"]["walkable_area_m2"]))
    return TruthCase(series, doc)


def registry_with_counters(counters: dict | None = None) -> Registry:
    """The bundled Bund registry (data/bund/registry.geojson) plus the truth counters."""
    doc = json.loads((data_dir() / "bund" / "registry.geojson").read_text(encoding="utf-8"))
    doc["features"] = doc["features"] + (counters or read_counters())["features"]
    return registry_from_geojson(doc)


def topic(device: str, prefix: str = "city/") -> str:
    """The MQTT topic a crowd counter publishes on."""
    return f"{prefix}sensors/crowd/{device}"


def senml_pack(device: str, t: float, count: int) -> bytes:
    """The SenML pack a crowd counter sends: one ``count`` record at unix time ``t`` [s]."""
    return json.dumps([{"bn": f"urn:dev:{device}:", "n": "count", "u": "count", "v": int(count), "t": t}],
                      separators=(",", ":")).encode()
