"""Benchmark: bulk import of a million devices into the registry database, and the cost of a look-up.

Run:  python benchmarks/registry.py                 (1,000,000 devices, GeoJSON and CSV, SQLite and PostgreSQL)
      python benchmarks/registry.py --quick         (100,000 devices)
      python benchmarks/registry.py --db sqlite --format csv

The devices are synthetic (crowd counters, gauges, loop detectors as points and vehicles over Shanghai's extent;
one crowd counter in ten with a polygon area) and written to a GeoJSON and a CSV file first. Each import goes into
a fresh database (PostgreSQL: a scratch database on ``CITYTWIN_TEST_PG``, default the machine's, dropped after)
through ``RegistryStore.import_file``, the path of ``twin devices import``: read, check every row, write in one
transaction. The target is < 60 s for a million (issue 19). The baseline in the same run is reading and parsing
the file alone (``json.load`` / ``csv`` with no checks and no database, the garbage collector paused as in the
import): the import's time over it says what the checks and the database cost.

Then the hot path: the time to read the whole registry back (a twin's start), and the admission of one SenML message
(route, look-up, checks, decode, dedupe) with the million-device registry against the Bund's 82 devices, in
microseconds per message: a look-up is one dict look-up, so the two must match.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and "ingest" would be benchmarks/ingest.py.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from ingest.admission import Admission  # noqa: E402
from ingest.batch import Batch  # noqa: E402
from ingest.decoders.senml import encode_senml  # noqa: E402
from ingest.registry import load_registry  # noqa: E402
from ingest.registry_db import RegistryStore  # noqa: E402
from ingest.validation import Limits  # noqa: E402
from twin.district.sources import data_dir  # noqa: E402

TARGET_S = 60.0
PG_URL = os.environ.get("CITYTWIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BBOX = (120.86, 30.68, 122.12, 31.87)
"""Shanghai's extent, lon/lat [degree]."""
KINDS = (("crowd", ["count"]), ("rain", ["rain"]), ("water", ["depth"]), ("traffic", ["speed", "flow", "occ"]),
         ("vehicle", ["position"]))


def synthetic_features(n: int, seed: int = 19):
    """``n`` registry features (see the module docstring)."""
    rng = random.Random(seed)
    for i in range(n):
        kind, quantities = KINDS[i % len(KINDS)]
        lon, lat = rng.uniform(BBOX[0], BBOX[2]), rng.uniform(BBOX[1], BBOX[3])
        geometry = {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}
        if kind == "crowd" and i % 50 == 0:
            d = 0.0004
            ring = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
            geometry = {"type": "Polygon", "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]]}
        props = {"id": f"{kind}-{i:07d}", "kind": kind, "quantities": quantities, "name": f"设备 device {i}",
                 "district": f"3101{i % 16:02d}"}
        yield {"type": "Feature", "geometry": geometry, "properties": props}


def write_files(n: int, folder: Path) -> tuple[Path, Path]:
    """The GeoJSON and CSV files of ``n`` synthetic devices."""
    feats = list(synthetic_features(n))
    geojson, table = folder / f"devices-{n}.geojson", folder / f"devices-{n}.csv"
    with open(geojson, "w", encoding="utf-8") as f:
        json.dump({"type": "FeatureCollection", "features": feats}, f, ensure_ascii=False)
    with open(table, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "kind", "quantities", "name", "unit_type", "lon", "lat", "geometry", "district"])
        for feat in feats:
            p, g = feat["properties"], feat["geometry"]
            point = g["type"] == "Point"
            w.writerow([p["id"], p["kind"], ";".join(p["quantities"]), p["name"], "",
                        g["coordinates"][0] if point else "", g["coordinates"][1] if point else "",
                        "" if point else json.dumps(g), p["district"]])
    return geojson, table


def parse_only(path: Path) -> float:
    """Seconds to read and parse the file with no checks (the baseline), the garbage collector paused as the import
    pauses it."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        with open(path, encoding="utf-8", newline="") as f:
            rows = sum(1 for _ in csv.DictReader(f)) if path.suffix == ".csv" else len(json.load(f)["features"])
        seconds = time.perf_counter() - t0
    finally:
        gc.enable()
    assert rows > 0
    return seconds


class Database:
    """A fresh registry database of one kind (``sqlite`` or ``postgresql``), removed on exit."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind, self.folder, self.name = kind, folder, None

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            path = self.folder / f"registry-{uuid.uuid4().hex[:8]}.db"
            self.path = path
            return f"sqlite:///{path}"
        import psycopg

        self.name = f"citytwin_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {self.name}")
        return PG_URL.rsplit("/", 1)[0] + "/" + self.name

    def __exit__(self, *exc: object) -> None:
        if self.name is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {self.name} WITH (FORCE)")


def admit_us(registry, device: str, n: int = 20_000) -> float:
    """Microseconds per admitted one-record SenML message of ``device`` (median of 5 runs)."""
    runs = []
    for _ in range(5):
        adm = Admission(registry, Limits(rate_per_s=0, max_age_s=1e9, max_future_s=1e9))
        payloads = [encode_senml(Batch.build(1, device=device, t=1_735_689_600.0 + i, quantity="rain", value=1.0))
                    for i in range(n)]
        topic = f"city/sensors/rain/{device}"
        t0 = time.perf_counter()
        for i, p in enumerate(payloads):
            adm.admit_fast(topic, p, 1_735_689_600.0 + i)
        runs.append((time.perf_counter() - t0) / n * 1e6)
        assert adm.metrics.snapshot()["accepted"] == n
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="devices (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 devices")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--format", choices=("geojson", "csv", "both"), default="both")
    args = parser.parse_args()
    n = 100_000 if args.quick else args.n
    dbs = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        geojson, table = write_files(n, folder)
        print(f"{n:,} synthetic devices written in {time.perf_counter() - t0:.1f} s "
              f"(GeoJSON {geojson.stat().st_size / 1e6:.0f} MB, CSV {table.stat().st_size / 1e6:.0f} MB)")
        files = {"geojson": geojson, "csv": table}
        formats = ("geojson", "csv") if args.format == "both" else (args.format,)
        print(f"{'database':<11} {'file':<8} {'import s':>9} {'devices/s':>11} {'parse-only s':>13} {'ratio':>6}  "
              f"target < {TARGET_S:.0f} s")
        registry = None
        for db in dbs:
            for fmt in formats:
                with Database(db, folder) as url:
                    store = RegistryStore.open(url)
                    report = store.import_file(files[fmt])
                    assert report.added == n and not report.bad, report
                    base = parse_only(files[fmt])
                    ok = "met" if report.seconds < TARGET_S * n / 1_000_000 else "MISSED"
                    print(f"{db:<11} {fmt:<8} {report.seconds:>9.1f} {n / report.seconds:>11,.0f} {base:>13.1f} "
                          f"{report.seconds / base:>6.1f}  {ok}")
                    if registry is None:
                        t0 = time.perf_counter()
                        registry = store.registry()
                        load_s = time.perf_counter() - t0
                        print(f"  reading the whole registry back (a twin's start): {load_s:.1f} s")
                    store.close()
        small = load_registry(data_dir() / "bund" / "registry.geojson")
        big_us, small_us = admit_us(registry, "rain-0000001"), admit_us(small, "rain-01")
        print(f"admission of one SenML message: {big_us:.2f} us with {len(registry):,} devices, {small_us:.2f} us "
              f"with the Bund's {len(small)} (ratio {big_us / small_us:.2f}; a look-up is one dict look-up)")


if __name__ == "__main__":
    main()
