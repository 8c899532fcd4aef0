"""The city deployment under load: ``twin run --city`` on this machine, fed as 11 million terminals feed it.

The deployment is the real one-command start (`twin.cli.city_run`): N ingest workers (MQTT 5 shared subscription),
the four district twins of data/city/bund4.yaml (the Bund cut into Huangpu, Hongkou, Yangpu and Pudong, tick 1 s)
and the city tier, over a private Mosquitto (deploy/mosquitto.conf) and the private ``nats-server -js`` that
``twin run --city`` starts itself, all on loopback. Its city is bund4 plus a registry of synthetic sensors: per
district ``--devices`` rain gauges, water gauges and loop detectors (a third each) at random points of the
district's area, so that every district twin takes load.

The load: 11 M terminals reporting every 5 minutes make 11e6 / 300 = 36,667 records/s. Devices batch as loggers
and gateways do: each MQTT message is one device's SenML pack of ``--pack`` readings (the contract's topic names
one device, docs/contract/mqtt.md), published at QoS 1 over ``--connections`` MQTT connections, one process each.
Every record is a distinct reading (device, time), so none is a duplicate.

Measured, per number of ingest workers (``--workers``, e.g. 1,2,4):

* **burst**: ``--burst`` records published as fast as the connections go (faster than the deployment takes them:
  the broker queues the rest). *End to end* records/s is all of them over first publish to last applied, where
  applied is the sum of the district twins' ``rows`` in the status each publishes after every tick; *middle 80 %*
  is the slope of that sum between 10 % and 90 % of the burst (the stages drain their queues then, so it is a
  peak, not a sustained figure);
* **rate** (at ``--rate-workers`` workers): the city's 36,667 records/s offered for ``--seconds``; the applied
  rate, and the lag publish -> applied: for the k-th record of a district, the time its twin had applied k rows
  minus the time k records had been published to it (the status comes once a tick, so the lag is known to within
  one tick: both bounds are printed);
* **loss**: records the broker acknowledged minus rows the twins applied (must be 0), duplicates and refusals;
* **CPU**: core-seconds per million records of every part (ingest workers, district twins, city tier, NATS,
  Mosquitto, load generator), from /proc, over the measured window; resident memory of every part; bytes per
  record in the stream: the basis of the machine count for the city (docs/guides/city-performance.md).

Baselines, in the same run, on the same broker and the same packs: (a) a bare paho subscriber that only counts
messages (the MQTT path's ceiling), (b) the single-process twin (``twin run``'s `LiveService`) on the whole Bund at
10 m with the same registry: what one process does with the same work.

    python benchmarks/city.py                       # workers 1,2,4; bursts of 4 M records; 30 s at 36,667/s
    python benchmarks/city.py --quick               # workers 1,2; 600 k records; 15 s
    python benchmarks/city.py --workers 2 --rate-workers 2 --json out.json

Linux only (CPU from /proc). Needs ``mosquitto`` and ``nats-server`` on the PATH.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import shapely  # noqa: E402

from tests.support.mqtt import PrivateBroker, end_session, free_port, stop_tree  # noqa: E402

TERMINALS = 11_000_000
CADENCE_S = 300.0
CITY_RATE = TERMINALS / CADENCE_S
"""Records/s of 11 M terminals at a 5-minute cadence. [s-1]"""
PARTITIONS = ("310101", "310109", "310110", "310115")
KINDS = (("rain", "rain", "mm/h", 0.0, 2.0), ("water", "depth", "m", 0.0, 0.02), ("traffic", "speed", "km/h", 30., 60.))
"""Synthetic sensor kinds: (registry kind, quantity, SenML unit, low, high); values that raise no alert."""
SPACING_S = 1.0
"""Seconds between two readings of one synthetic device (its own clock). [s]"""
MAX_SPAN_S = 22 * 3600.0
"""The readings of a run span at most this much of a device's clock (the ingest refuses readings older than 24 h).
[s]"""
MIN_WINDOW_S = 3.0
"""A burst whose 10-90 % took less than this gives no sustained rate (the statuses come once a tick). [s]"""
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# ---------------------------------------------------------------- the city
def synthetic_devices(areas: dict[str, shapely.Geometry], per_district: int, seed: int = 19) -> list[dict]:
    """Registry features: ``per_district`` sensors at random points of each district's area, kinds in turn."""
    rng = np.random.default_rng(seed)
    features = []
    for partition, area in areas.items():
        west, south, east, north = area.bounds
        shapely.prepare(area)
        placed = 0
        while placed < per_district:
            lon, lat = rng.uniform(west, east, 4 * per_district), rng.uniform(south, north, 4 * per_district)
            inside = shapely.contains_xy(area, lon, lat)
            for x, y in zip(lon[inside], lat[inside], strict=True):
                if placed == per_district:
                    break
                kind, quantity = KINDS[placed % len(KINDS)][:2]
                features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [round(x, 6),
                                                                                                 round(y, 6)]},
                                 "properties": {"id": f"bench-{partition}-{placed:05d}", "kind": kind,
                                                "quantities": [quantity], "name": f"benchmark {kind} {placed}"}})
                placed += 1
    return features


def manifest_text(registry: Path, stream: str, prefix: str, broker_port: int, nats_port: int) -> str:
    """bund4 with the synthetic registry, on its own stream, subjects, prefix, broker and NATS."""
    from twin.district.sources import data_dir

    text = (data_dir() / "city" / "bund4.yaml").read_text(encoding="utf-8")
    for old, new in (("  url: nats://127.0.0.1:4222\n", f"  url: nats://127.0.0.1:{nats_port}\n"),
                     ("  name: TWIN\n", f"  name: {stream}\n  subjects: bench.{stream}.\n"),
                     ("  broker: mqtt://127.0.0.1:1883\n", f"  broker: mqtt://127.0.0.1:{broker_port}\n"),
                     ("  prefix: city/\n", f"  prefix: {prefix}\n"),
                     ("registry: [bundled:bund]", f"registry: [bundled:bund, {registry}]")):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def build_city(cache: Path, per_district: int):
    """The benchmark's city built (or found) in ``cache``: (registry file, {device: partition}, build seconds)."""
    from twin.city.city import load_city

    cache.mkdir(parents=True, exist_ok=True)
    registry = cache / "bench-devices.geojson"
    base = cache / "bench-city.yaml"
    base.write_text(manifest_text(registry, "TWIN", "city/", 1883, 4222), encoding="utf-8")
    if not registry.is_file() or json.loads(registry.read_text()).get("per_district") != per_district:
        areas = load_city(data_dir_manifest(), cache=cache / "city").areas
        doc = {"type": "FeatureCollection", "per_district": per_district,
               "features": synthetic_devices(areas, per_district)}
        registry.write_text(json.dumps(doc), encoding="utf-8")
    city = load_city(base, cache=cache / "city")
    t0 = time.perf_counter()
    report = city.build()
    city.raster()
    home = {d: p for d, p in report.assignment.home.items() if d.startswith("bench-")}
    return registry, home, time.perf_counter() - t0


def data_dir_manifest() -> Path:
    from twin.district.sources import data_dir

    return data_dir() / "city" / "bund4.yaml"


# ---------------------------------------------------------------- the load
@dataclass(frozen=True)
class Load:
    """What the publishers send: ``records`` readings in packs of ``pack`` over the devices; ``rate`` records/s
    overall (None: as fast as the connections go)."""

    records: int
    pack: int
    rate: float | None
    start_t: float
    """The devices' first reading time [unix s]."""


def packs(devices: list[tuple[str, str, int]], load: Load, k: int, connections: int):
    """Connection ``k``'s messages: (topic, payload, partition index, records). Devices are dealt out to the
    connections; each pack holds one device's next ``pack`` readings."""
    mine = devices[k::connections]
    per_conn = load.records // connections + (1 if k < load.records % connections else 0)
    clocks = [load.start_t] * len(mine)
    out, left, i = [], per_conn, 0
    while left > 0:
        d = i % len(mine)
        dev, kind, part = mine[d]
        quantity, unit, low, high = next(k_[1:] for k_ in KINDS if k_[0] == kind)
        n = min(load.pack, left)
        bt = clocks[d]
        values = np.round(low + (high - low) * ((np.arange(n) * 7 + i) % 10) / 10.0, 3)
        recs = [f'{{"bn":"urn:dev:{dev}:","bt":{bt:.1f},"bu":"{unit}","n":"{quantity}","v":{values[0]},"t":0}}']
        recs += [f'{{"n":"{quantity}","v":{values[j]},"t":{j * SPACING_S:g}}}' for j in range(1, n)]
        out.append((f"{{prefix}}sensors/{kind}/{dev}", ("[" + ",".join(recs) + "]").encode(), part, n))
        clocks[d] = bt + n * SPACING_S
        left -= n
        i += 1
    return out


def publisher(port: int, prefix: str, devices, load: Load, k: int, connections: int, ready, go, out) -> None:
    """One load-generator connection (a child process): encodes its packs, waits for ``go``, publishes them at QoS 1
    (paced to its share of ``load.rate``, or as fast as it can), and reports per message the time ``publish`` was
    called, its partition and records, and how many the broker acknowledged."""
    messages = [(topic.replace("{prefix}", prefix), payload, part, n) for topic, payload, part, n in
                packs(devices, load, k, connections)]
    acked = {"messages": 0, "records": 0}
    done = threading.Event()
    sizes: dict[int, int] = {}

    def on_publish(client, userdata, mid, reason_code=None, properties=None):
        acked["messages"] += 1
        acked["records"] += sizes.pop(mid, 0)
        if acked["messages"] == len(messages):
            acked["last_s"] = time.time()
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-load-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311)
    client.on_publish = on_publish
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=120)
    client.loop_start()
    ready.set()
    t0 = go.get()
    if t0 > time.time():
        time.sleep(t0 - time.time())  # every connection starts at t0
    cpu0 = _own_cpu_s()  # the encoding before is not the load's cost
    every = connections * load.pack / load.rate if load.rate else 0.0
    sent = np.zeros(len(messages))
    for i, (topic, payload, _part, n) in enumerate(messages):
        if every:
            pause = t0 + i * every - time.time()
            if pause > 0:
                time.sleep(pause)  # the generator's pace (a device's schedule), not a wait for a result
        sent[i] = time.time()
        info = client.publish(topic, payload, qos=1)
        sizes[info.mid] = n
    complete = done.wait(600)
    client.disconnect()
    client.loop_stop()
    out.put({"k": k, "sent": sent, "part": np.array([m[2] for m in messages]), "n": np.array([m[3] for m in messages]),
             "acked_records": acked["records"], "complete": complete, "cpu_s": _own_cpu_s() - cpu0,
             "last_ack": acked.get("last_s", float("nan"))})


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def run_load(port: int, prefix: str, devices, load: Load, connections: int) -> dict:
    """Publish ``load`` over ``connections`` child processes; per message (send time, partition, records), the
    records the broker acknowledged, the generator's CPU seconds."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    readies, gos = [ctx.Event() for _ in range(connections)], [ctx.Queue() for _ in range(connections)]
    procs = [ctx.Process(target=publisher, args=(port, prefix, devices, load, k, connections, readies[k], gos[k], out))
             for k in range(connections)]
    for p in procs:
        p.start()
    for r in readies:
        if not r.wait(300):
            raise RuntimeError("a load generator did not get ready within 300 s")
    t0 = time.time() + 0.2
    for g in gos:
        g.put(t0)
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(30)
    if not all(r["complete"] for r in results):
        raise RuntimeError("the broker did not acknowledge every message within 600 s")
    return {"sent": np.concatenate([r["sent"] for r in results]), "part": np.concatenate([r["part"] for r in results]),
            "n": np.concatenate([r["n"] for r in results]), "acked": sum(r["acked_records"] for r in results),
            "cpu_s": sum(r["cpu_s"] for r in results), "t0": t0, "last_ack": max(r["last_ack"] for r in results)}


# ---------------------------------------------------------------- watching the deployment
class StatusWatch:
    """Keeps (receive time, partition, rows, duplicates, refused, tick_ms) of every district status
    (``<prefix>twin/status/+``, published after every tick)."""

    def __init__(self, port: int, prefix: str) -> None:
        self.events: list[tuple[float, str, int, int, int, float]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{prefix}twin/status/+", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            s = json.loads(msg.payload)
            row = (time.time(), s["partition"], int(s["rows"]), int(s["duplicates"]), sum(s["refused"].values()),
                   float(s["tick_ms"]))
        except (ValueError, KeyError, TypeError):
            return
        with self.cond:
            self.events.append(row)
            self.cond.notify_all()

    def latest(self) -> dict[str, tuple]:
        with self.cond:
            out = {}
            for e in self.events:
                out[e[1]] = e
            return out

    def rows(self) -> int:
        return sum(e[2] for e in self.latest().values())

    def wait(self, predicate, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of a process [MB] (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def children_of(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is ``pid``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
    return out


PART_NAMES = (("ingest-worker", "ingest workers"), ("twin.cli district", "district twins"),
              ("city-tier", "city tier"), ("nats-server", "NATS"))


@dataclass
class CpuMeter:
    """CPU seconds per part of the deployment between ``start`` and ``stop``."""

    pids: dict[int, str]
    begin: dict[int, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.begin = {pid: process_cpu_s(pid) for pid in self.pids}

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for pid, name in self.pids.items():
            used[name] = used.get(name, 0.0) + max(0.0, process_cpu_s(pid) - self.begin.get(pid, 0.0))
        self.used = used
        return used


# ---------------------------------------------------------------- one deployment
class Deployment:
    """``twin run --city`` with N workers on the benchmark's broker; its own stream, prefix, NATS and state."""

    def __init__(self, work: Path, cache: Path, registry: Path, broker: PrivateBroker, workers: int) -> None:
        from twin.city.manifest import load_manifest
        from twin.cli.city_run import mqtt_names

        self.stream = f"BENCH_{uuid.uuid4().hex[:8]}"
        self.prefix = f"bench-{uuid.uuid4().hex[:6]}/"
        self.folder = work / f"w{workers}-{self.stream}"
        self.folder.mkdir(parents=True)
        self.manifest = self.folder / "bench-city.yaml"
        self.manifest.write_text(manifest_text(registry, self.stream, self.prefix, broker.port, free_port()),
                                 encoding="utf-8")
        self.names = mqtt_names(load_manifest(self.manifest))
        self.broker, self.workers, self.cache = broker, workers, cache / "city"
        self.log = self.folder / "run.log"
        self.proc: subprocess.Popen | None = None

    def open_sessions(self) -> None:
        """The workers' sessions and shared subscriptions before they start: nothing published is lost to a worker
        that has not subscribed yet."""
        from ingest.routing import subscriptions
        from ingest.transport.client import MqttTransport
        from tests.support.mqtt import subscribed_event

        for k in range(1, self.workers + 1):
            pre = MqttTransport(self.broker.url, client_id=f"{self.names['base']}-ingest-w{k}",
                                subscriptions=subscriptions(self.prefix), share_group=self.names["group"])
            subscribed = subscribed_event(pre)
            if not (pre.start(10) and subscribed.wait(10)):
                raise RuntimeError("the benchmark's broker did not take a worker session's subscription")
            pre.stop()

    def start(self) -> None:
        from tests.support.checkout import checkout_env

        cmd = [sys.executable, "-m", "twin.cli", "run", "--city", str(self.manifest), "--workers", str(self.workers),
               "--city-cache", str(self.cache), "--city-http", "0", "--state", str(self.folder / "state")]
        out = open(self.log, "w", encoding="utf-8")  # noqa: SIM115 -- the child's output, closed by the child's end
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                     env=checkout_env(PYTHONUNBUFFERED="1"))
        out.close()

    def parts(self) -> dict[int, str]:
        """pid -> part name of the running children (and the broker)."""
        names = {}
        for pid, cmd in children_of(self.proc.pid).items():
            names[pid] = next((name for key, name in PART_NAMES if key in cmd), "other")
        names[self.broker.proc.pid] = "Mosquitto"
        return names

    def stream_bytes(self) -> int:
        """Bytes the stream holds now (records, headers and the server's own overhead)."""
        from ingest.stream.jetstream import JetStream
        from twin.city.manifest import load_manifest

        settings = load_manifest(self.manifest).stream
        js = JetStream(settings.url, stream=settings.name, subject_prefix=settings.subjects)
        try:
            return js.info()["bytes"]
        finally:
            js.close()

    def worker_records(self) -> dict[str, int]:
        """Records each ingest worker published to the stream (its status file, written at stop)."""
        out = {}
        for k in range(1, self.workers + 1):
            path = self.folder / "state" / "city" / self.manifest.stem / "ingest" / f"w{k}" / "status.json"
            try:
                out[f"w{k}"] = sum(json.loads(path.read_text())["stream"]["records_out"].values())
            except (OSError, ValueError, KeyError):
                out[f"w{k}"] = -1
        return out

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        return stop_tree(self.proc, children_of(self.proc.pid), 90)


def lag_bounds(load: dict, watch: StatusWatch, since: float) -> tuple[np.ndarray, np.ndarray]:
    """Per record, lower and upper bounds of publish -> applied [s] (see the module docstring): the k-th record of a
    district published after ``since`` was applied after the last status with fewer than k new rows and by the first
    with k or more."""
    with watch.cond:
        events = list(watch.events)
    lo_all, hi_all = [], []
    for p_index, partition in enumerate(PARTITIONS):
        mine = load["part"] == p_index
        before = [e[2] for e in events if e[1] == partition and e[0] < since]
        steps = np.array([(e[0], e[2]) for e in events if e[1] == partition and e[0] >= since])
        if not mine.any() or len(steps) == 0:
            continue
        order = np.argsort(load["sent"][mine], kind="stable")
        sent, n = load["sent"][mine][order], load["n"][mine][order]
        times, rows = steps[:, 0], steps[:, 1] - (before[-1] if before else 0)
        published = np.cumsum(n)  # records published to the partition once message i was sent
        first = np.searchsorted(rows, published, side="left")  # the first status that counts each pack's last record
        done = first < len(times)
        after = times[np.minimum(first, len(times) - 1)]
        prior = np.where(first > 0, times[np.maximum(first - 1, 0)], since)
        lo_all.append(np.repeat(np.maximum(prior - sent, 0.0)[done], n[done]))
        hi_all.append(np.repeat((after - sent)[done], n[done]))
    return (np.concatenate(lo_all) if lo_all else np.zeros(0)), (np.concatenate(hi_all) if hi_all else np.zeros(0))


def settle(watch: StatusWatch, target: int, timeout_s: float) -> bool:
    """Wait until the twins have applied ``target`` rows in all."""
    return watch.wait(lambda: sum(e[2] for e in _latest(watch.events).values()) >= target, timeout_s)


def _latest(events) -> dict:
    out = {}
    for e in events:
        out[e[1]] = e
    return out


def run_deployment(work: Path, cache: Path, registry: Path, broker: PrivateBroker, devices, workers: int,
                   burst: Load, rate: Load | None, connections: int) -> dict:
    """Start the deployment with ``workers`` ingest workers, run the burst (and the rate load), stop it."""
    dep = Deployment(work, cache, registry, broker, workers)
    dep.open_sessions()
    watch = StatusWatch(broker.port, dep.prefix)
    result: dict = {"workers": workers}
    try:
        t_start = time.perf_counter()
        dep.start()
        if not watch.wait(lambda: len(_latest(watch.events)) == len(PARTITIONS), 180):
            raise RuntimeError(f"the district twins did not all report within 180 s; see {dep.log}")
        result["start_s"] = time.perf_counter() - t_start
        meter = CpuMeter(dep.parts())
        applied_before = watch.rows()
        meter.start()
        t_burst = time.time()
        sent = run_load(broker.port, dep.prefix, devices, burst, connections)
        ok = settle(watch, applied_before + sent["acked"], 300)
        cpu = meter.stop()
        cpu["load generator"] = sent["cpu_s"]
        result["burst"] = _burst_figures(watch, sent, applied_before, t_burst, ok)
        result["stream_bytes_per_record"] = dep.stream_bytes() / max(1, watch.rows())
        result["cpu_burst_s"] = cpu
        if rate is not None:
            applied_before = watch.rows()
            meter.start()
            t_rate = time.time()
            offered = run_load(broker.port, dep.prefix, devices, rate, connections)
            ok = settle(watch, applied_before + offered["acked"], 120)
            cpu = meter.stop()
            cpu["load generator"] = offered["cpu_s"]
            lo, hi = lag_bounds(offered, watch, t_rate)
            result["rate"] = {"offered": offered["acked"], "seconds": float(offered["sent"].max() - offered["t0"]),
                              "offered_rate": offered["acked"] / max(1e-9, float(offered["sent"].max()
                                                                                  - offered["t0"])),
                              "applied": watch.rows() - applied_before, "complete": ok,
                              "lag_p50": _bounds(lo, hi, 50), "lag_p99": _bounds(lo, hi, 99),
                              "lag_max": (float(lo.max()) if lo.size else None, float(hi.max()) if hi.size else None)}
            result["cpu_rate_s"] = cpu
            with watch.cond:
                ticks = [e for e in watch.events if e[0] >= t_rate]
            result["tick_ms"] = {p: float(np.mean([e[5] for e in ticks if e[1] == p] or [np.nan])) for p in PARTITIONS}
        result["rss_mb"] = memory(dep)
        latest = _latest(watch.events)
        result["duplicates"] = sum(e[3] for e in latest.values())
        result["refused"] = sum(e[4] for e in latest.values())
        result["rows_by_district"] = {p: latest[p][2] for p in PARTITIONS if p in latest}
    finally:
        watch.close()
        result["exit"] = dep.stop()
        result["worker_records"] = dep.worker_records()
    return result


def memory(dep: Deployment) -> dict[str, float]:
    """Resident memory [MB] of every part, the district twins one by one."""
    out: dict[str, float] = {}
    for pid, cmd in children_of(dep.proc.pid).items():
        name = next((n for key, n in PART_NAMES if key in cmd), "other")
        if name == "district twins":
            name = "district " + cmd.split("--district ")[1].split()[0]
        out[name] = out.get(name, 0.0) + rss_mb(pid)
    out["Mosquitto"] = rss_mb(dep.broker.proc.pid)
    return out


def _bounds(lo: np.ndarray, hi: np.ndarray, q: float) -> tuple[float | None, float | None]:
    if not lo.size:
        return None, None
    return float(np.percentile(lo, q)), float(np.percentile(hi, q))


def _burst_figures(watch: StatusWatch, sent: dict, before: int, t0: float, complete: bool) -> dict:
    total = sent["acked"]
    with watch.cond:
        events = list(watch.events)
    # the sum of the latest rows of every district, after each status from t0 on
    latest: dict[str, int] = {p: e[2] for p, e in _latest([e for e in events if e[0] < t0]).items()}
    curve = []
    for e in (e for e in events if e[0] >= t0):
        latest[e[1]] = e[2]
        curve.append((e[0], sum(latest.values()) - before))
    curve_a = np.array(curve) if curve else np.zeros((0, 2))
    figures = {"records": total, "applied": int(curve_a[-1, 1]) if len(curve_a) else 0, "complete": complete,
               "publish_s": float(sent["last_ack"] - sent["t0"]),
               "publish_rate": total / max(1e-9, float(sent["last_ack"] - sent["t0"]))}
    if len(curve_a) and curve_a[-1, 1] >= total:
        # rows grow between statuses: the times the curve crosses 10 % and 90 %, linearly between two statuses
        rows = np.maximum.accumulate(curve_a[:, 1])
        t10, t90 = np.interp([0.1 * total, 0.9 * total], rows, curve_a[:, 0])
        done = curve_a[np.searchsorted(rows, total), 0]
        if t90 - t10 >= MIN_WINDOW_S:
            figures["sustained_rate"] = 0.8 * total / (t90 - t10)
        figures["end_to_end_rate"] = total / max(1e-9, done - sent["t0"])
    return figures


# ---------------------------------------------------------------- baselines
def bare_baseline(broker: PrivateBroker, devices, load: Load, connections: int) -> dict:
    """A bare paho subscriber (persistent session, QoS 1) drains the preloaded packs; records/s."""
    prefix = f"bare-{uuid.uuid4().hex[:6]}/"
    client_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
    state = {"messages": 0, "records": 0, "first": 0.0, "last": 0.0}
    want = {"messages": None}
    done = threading.Event()

    def on_message(c, u, m):
        state["messages"] += 1
        state["records"] += m.payload.count(b'"n"')
        state["last"] = time.perf_counter()
        if want["messages"] is not None and state["messages"] >= want["messages"]:
            done.set()

    def connect() -> mqtt.Client:
        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                        clean_session=False)
        c.on_message = on_message
        c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{prefix}sensors/#", qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        subscribed.wait(10)
        return c

    c = connect()
    c.disconnect()
    c.loop_stop()
    sent = run_load(broker.port, prefix, devices, load, connections)
    want["messages"] = len(sent["n"])
    t0 = time.perf_counter()
    c = connect()
    complete = done.wait(600)
    c.disconnect()
    c.loop_stop()
    end_session(client_id, broker.port)
    return {"records": state["records"], "messages": state["messages"], "complete": complete,
            "rate": state["records"] / max(1e-9, state["last"] - t0)}


def single_twin_baseline(broker: PrivateBroker, work: Path, cache: Path, devices, load: Load,
                         connections: int) -> dict:
    """``twin run``'s live service on the whole Bund at 10 m with the same registry drains the same packs (preloaded
    into its persistent session); records/s applied."""
    from twin.cli.run import default_grid
    from twin.live.core import CoreConfig
    from twin.live.query import LiveQuery
    from twin.live.service import LiveService, ServiceConfig

    grid = default_grid(cache)
    prefix = f"single-{uuid.uuid4().hex[:6]}/"
    client_id = f"bench-single-{uuid.uuid4().hex[:6]}"
    state = work / "single"

    def service() -> LiveService:
        return LiveService(ServiceConfig(broker=broker.url, grid=grid, registry=cache / "city" / "registry.geojson",
                                         state_dir=state, tick_s=1.0, prefix=prefix, client_id=client_id,
                                         snapshot_every_s=3600.0, core=CoreConfig(prefix=prefix, tick_s=1.0)))

    svc = service()
    if not svc.start(10):
        raise RuntimeError("the single-process twin did not connect")
    svc.stop()  # the session exists: the broker queues the packs for it
    sent = run_load(broker.port, prefix, devices, load, connections)
    svc = service()
    t0 = time.perf_counter()
    cpu0 = _own_cpu_s()
    svc.start(10)
    query = LiveQuery(svc)
    deadline = t0 + 900
    while query.ingest_metrics()["accepted_records"] < sent["acked"] and time.perf_counter() < deadline:
        time.sleep(0.05)  # polling pace of the counters, bounded by the deadline
    elapsed = time.perf_counter() - t0
    cpu = _own_cpu_s() - cpu0
    got = query.ingest_metrics()["accepted_records"]
    svc.stop()
    end_session(client_id, broker.port)
    return {"records": got, "published": sent["acked"], "rate": got / elapsed, "cpu_s": cpu}


# ---------------------------------------------------------------- report
def report(results: dict) -> str:
    lines = []
    b = results["baselines"]
    lines.append(f"city: bund4 (4 district twins, tick 1 s) + {results['devices']} synthetic sensors; packs of "
                 f"{results['pack']} records, {results['connections']} MQTT connections, QoS 1; private Mosquitto and "
                 f"nats-server on loopback; {os.cpu_count()} cores")
    lines.append(f"baselines (same broker, same packs, {b['records']:,} records):")
    lines.append(f"  (a) bare paho subscriber, counts only        {b['bare']['rate']:>12,.0f} records/s")
    lines.append(f"  (b) single-process twin (twin run, whole Bund) {b['single']['rate']:>10,.0f} records/s")
    lines.append("burst: records published as fast as the connections go; applied = sum of the district twins' rows")
    lines.append("  published at " + ", ".join(f"{r['burst']['publish_rate']:,.0f}" for r in results["deployments"])
                 + " records/s")
    lines.append(f"{'workers':>7} {'records':>10} {'end-to-end/s':>13} {'middle 80%/s':>13} {'x (a)':>6} {'x (b)':>6} "
                 f"{'lost':>5} {'dup':>4} {'refused':>7} {'records per worker':>22} {'exit':>4}")
    for r in results["deployments"]:
        f = r["burst"]
        lost = f["records"] - f["applied"]
        e2e = f.get("end_to_end_rate", 0)
        middle = f"{f['sustained_rate']:,.0f}" if "sustained_rate" in f else "n/a"
        lines.append(f"{r['workers']:>7} {f['records']:>10,} {e2e:>13,.0f} {middle:>13} "
                     f"{e2e / b['bare']['rate']:>6.2f} {e2e / b['single']['rate']:>6.2f} {lost:>5} "
                     f"{r['duplicates']:>4} "
                     f"{r['refused']:>7} {' '.join(f'{v:,}' for v in r['worker_records'].values()):>22} "
                     f"{r['exit']!s:>4}")
    lines.append("stream: " + ", ".join(f"{r['stream_bytes_per_record']:.0f}" for r in results["deployments"])
                 + " bytes per record in JetStream")
    lines.append("CPU over the burst [core-seconds per million records]:")
    for r in results["deployments"]:
        per = {k: v / max(1, r["burst"]["records"]) * 1e6 for k, v in sorted(r["cpu_burst_s"].items())}
        lines.append(f"  {r['workers']} workers: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
    for r in results["deployments"]:
        if "rate" not in r:
            continue
        q = r["rate"]
        lines.append(f"rate: {q['offered_rate']:,.0f} records/s offered for {q['seconds']:.0f} s with {r['workers']} "
                     f"workers: {q['applied']:,} of {q['offered']:,} applied (loss {q['offered'] - q['applied']}); lag "
                     f"publish -> applied p50 {_fmt(q['lag_p50'])}, p99 {_fmt(q['lag_p99'])}, max {_fmt(q['lag_max'])} "
                     "(bounds: the status comes once a tick)")
        per = {k: v / max(1, q["offered"]) * 1e6 for k, v in sorted(r["cpu_rate_s"].items())}
        lines.append("  CPU [core-s per million records]: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
        cores = {k: v / max(1e-9, q["seconds"]) for k, v in sorted(r["cpu_rate_s"].items())}
        lines.append("  CPU [cores busy]: " + ", ".join(f"{k} {v:.3f}" for k, v in cores.items()))
        lines.append("  tick [ms, mean]: " + ", ".join(f"{p} {v:.1f}" for p, v in r["tick_ms"].items()))
        lines.append("  memory [MB resident]: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["rss_mb"].items())))
    return "\n".join(lines)


def _fmt(bounds) -> str:
    lo, hi = bounds
    return "n/a" if lo is None else f"{lo:.2f}-{hi:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="workers 1,2; 600 k records; 15 s of rate")
    parser.add_argument("--workers", default=None, help="ingest worker counts, comma-separated (default 1,2,4)")
    parser.add_argument("--rate-workers", type=int, default=2, help="workers of the rate run (default 2; 0: none)")
    parser.add_argument("--burst", type=int, default=None, help="records per burst (default 4,000,000)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of the rate run (default 30)")
    parser.add_argument("--rate", type=float, default=CITY_RATE, help=f"offered records/s (default {CITY_RATE:,.0f})")
    parser.add_argument("--pack", type=int, default=500, help="records per SenML pack (default 500)")
    parser.add_argument("--connections", type=int, default=4, help="MQTT connections of the load (default 4)")
    parser.add_argument("--devices", type=int, default=240, help="synthetic sensors per district (default 240)")
    parser.add_argument("--cache", type=Path, default=REPO / "var" / "bench" / "city", help="the city's build cache")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args(argv)
    workers = [int(w) for w in (args.workers or ("1,2" if args.quick else "1,2,4")).split(",")]
    burst_n = args.burst or (600_000 if args.quick else 4_000_000)
    seconds = args.seconds or (15.0 if args.quick else 30.0)
    registry, home, build_s = build_city(args.cache, args.devices)
    print(f"city built or found in {build_s:.1f} s: {len(home)} synthetic sensors", flush=True)
    devices = [(d, _kind(d, registry), PARTITIONS.index(p)) for d, p in sorted(home.items())]
    base_n, rate_n = min(burst_n, 600_000), int(args.rate * seconds)
    # every deployment's readings follow on from the last one's (none is a duplicate), all within the ingest's
    # 24 h age limit and none in the future
    spans = [reading_span(n, args.pack, len(devices), args.connections)
             for n in [base_n] + [burst_n] * len(workers) + [rate_n]]
    if sum(spans) > MAX_SPAN_S:
        parser.error(f"{sum(spans) / 3600:.1f} h of readings per device: more than {MAX_SPAN_S / 3600:g} h; give "
                     "more --devices or fewer records")
    horizon = time.time() - sum(spans) - 600.0
    results: dict = {"devices": len(devices), "pack": args.pack, "connections": args.connections, "deployments": []}
    with tempfile.TemporaryDirectory() as tmp, PrivateBroker(Path(tmp) / "broker") as broker:
        work = Path(tmp)
        base_load = Load(base_n, args.pack, None, horizon)
        horizon += spans[0]
        results["baselines"] = {"records": base_load.records,
                                "bare": bare_baseline(broker, devices, base_load, args.connections),
                                "single": single_twin_baseline(broker, work, args.cache, devices, base_load,
                                                               args.connections)}
        print(f"baselines: bare {results['baselines']['bare']['rate']:,.0f} records/s, single-process twin "
              f"{results['baselines']['single']['rate']:,.0f} records/s", flush=True)
        for n in workers:
            burst = Load(burst_n, args.pack, None, horizon)
            horizon += spans[1]
            rate = None
            if n == args.rate_workers:
                rate = Load(rate_n, args.pack, args.rate, horizon)
                horizon += spans[-1]
            r = run_deployment(work, args.cache, registry, broker, devices, n, burst, rate, args.connections)
            results["deployments"].append(r)
            print(f"{n} workers: {r['burst'].get('end_to_end_rate', 0):,.0f} records/s end to end", flush=True)
    text = report(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=_jsonable), encoding="utf-8")
    return 0


def reading_span(records: int, pack: int, devices: int, connections: int) -> float:
    """Seconds of a device's own clock that ``records`` readings take at most (`packs` deals the packs out to the
    devices of each connection in turn). [s]"""
    messages = -(-records // connections // pack) + 1
    per_device = -(-messages // max(1, devices // connections))
    return (per_device + 1) * pack * SPACING_S


def _kind(device: str, registry: Path, _cache: dict = {}) -> str:  # noqa: B006 -- a cache of the file's kinds
    if registry not in _cache:
        doc = json.loads(registry.read_text(encoding="utf-8"))
        _cache[registry] = {f["properties"]["id"]: f["properties"]["kind"] for f in doc["features"]}
    return _cache[registry][device]


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


if __name__ == "__main__":
    mp.set_start_method("spawn", force=True)
    sys.exit(main())
