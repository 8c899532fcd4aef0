"""The live service under load, against a private Mosquitto with deploy/mosquitto.conf limits.

Two figures, each measured in this one run:

1. Sustained throughput: single-record crowd counts (QoS 1) preloaded into the broker, then drained
   (a) by a bare paho subscriber that only counts (the baseline, from benchmarks/ingest.py),
   (b) by the live twin on the Bund grid at 10 m with its 1 s tick running (durable log, manual ack,
   validation, decoding, state updates, models and alerts every second), its MQTT subscriber in a thread, and
   (c) the same with the subscriber in a child process (``twin run``'s default,
   ingest.transport.receiver.ProcessTransport). Reported as msg/s and the ratios to (a). Target for (c): >= 0.7.
2. Alert latency: a field unit stands on the promenade; a crowd count that crosses the red threshold is
   published, and the time until the CAP alert arrives on the unit's topic is measured, over repeated
   raise/cancel cycles (raise delay set to zero seconds, so the figure is the pipeline's, not the
   deliberate "for" delay). Reported as p50/p99. Target: p99 <= one tick + 100 ms.

    python benchmarks/live.py            # full run
    python benchmarks/live.py --quick    # fewer messages and cycles
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from benchmarks.ingest import bare_consumer, run_publishers, scenario  # noqa: E402
from ingest.batch import Batch  # noqa: E402
from ingest.decoders.nmea import encode_nmea  # noqa: E402
from ingest.validation import Limits  # noqa: E402
from models import AlertTiming, CrowdConfig, RiskConfig  # noqa: E402
from tests.support.mqtt import PrivateBroker  # noqa: E402
from twin.alerting.cap import info_block  # noqa: E402
from twin.district.sources import data_dir  # noqa: E402
from twin.live.core import CoreConfig  # noqa: E402
from twin.live.models import LiveConfig  # noqa: E402
from twin.live.query import LiveQuery  # noqa: E402
from twin.live.service import LiveService, ServiceConfig  # noqa: E402

PREFIX = "bench/"
TICK_S = 1.0
UNIT = "unit-police-04"
CHEN_YI_SQUARE = (121.4855, 31.2405)


def service(broker: PrivateBroker, grid: Path, state: Path, fast_alerts: bool = False,
            receiver: str = "process") -> LiveService:
    # no raise delay and no flap hold: repeated raise/cancel cycles are the point of the measurement
    timing = AlertTiming(for_s=0.0, keep_s=1.0, flap_high=1000.0, flap_low=999.0) if fast_alerts else AlertTiming()
    risk = RiskConfig(crowd=CrowdConfig(timing=timing)) if fast_alerts else RiskConfig()
    cfg = ServiceConfig(broker=broker.url, grid=grid, registry=data_dir() / "bund" / "registry.geojson",
                        state_dir=state, tick_s=TICK_S, prefix=PREFIX, client_id=f"bench-live-{state.name}",
                        snapshot_every_s=3600.0, limits=Limits(rate_per_s=0.0), receiver=receiver,
                        core=CoreConfig(prefix=PREFIX, tick_s=TICK_S, live=LiveConfig(risk=risk)))
    return LiveService(cfg)


def throughput(broker: PrivateBroker, grid: Path, work: Path, n: int, procs: int, receiver: str = "process") -> dict:
    """Preload n single-record messages, then time the live twin draining them with ticks running."""
    state = work / f"thr-{receiver}"
    svc = service(broker, grid, state, receiver=receiver)
    svc.start(10)
    svc.stop()  # the persistent session now exists: the broker queues what follows
    pub_rate, _ = run_publishers(broker.port, "single", n, procs, time.time())
    svc = service(broker, grid, state, receiver=receiver)
    t0 = time.perf_counter()
    svc.start(10)
    while LiveQuery(svc).ingest_metrics()['received'] < n and time.perf_counter() - t0 < 600:
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    got = LiveQuery(svc).ingest_metrics()['received']
    ticks = svc.last_report
    svc.stop()
    return {"messages": got, "elapsed": elapsed, "rate": got / elapsed, "publish_rate": pub_rate,
            "lost": n - got, "ticked": ticks is not None}


def latency(broker: PrivateBroker, grid: Path, work: Path, cycles: int) -> list[float]:
    """Seconds from the red crowd count to the CAP alert on the unit's topic, per raise/cancel cycle."""
    svc = service(broker, grid, work / "lat", fast_alerts=True)
    svc.start(10)
    arrived: list[tuple[float, dict]] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}units/{UNIT}/alerts", qos=1)
    c.on_message = lambda c, u, m: arrived.append((time.time(), json.loads(m.payload)))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    crowd = [f"crowd-bund-{i:02d}" for i in range(1, 13)]

    def send(count: float) -> float:
        t = time.time()
        for d in crowd:
            body = json.dumps([{"bn": f"urn:dev:{d}:", "n": "count", "u": "count", "v": count, "t": t}])
            c.publish(f"{PREFIX}sensors/crowd/{d}", body.encode(), qos=1).wait_for_publish(5)
        return t

    pos = Batch.build(1, device=UNIT, t=float(int(time.time())), lon=CHEN_YI_SQUARE[0], lat=CHEN_YI_SQUARE[1],
                      speed_kmh=0.0, course_deg=0.0, fix=1, hdop=0.8, quantity="position")
    c.publish(f"{PREFIX}beidou/{UNIT}", encode_nmea(pos, talker="GB"), qos=1).wait_for_publish(5)
    out = []
    for _ in range(cycles):
        deadline = time.time() + 60  # start each cycle with no crowd alert active
        while time.time() < deadline and any(a.hazard == "crowd" for a in LiveQuery(svc).active_alerts()):
            send(50.0)
            time.sleep(0.5)
        send(100.0)
        time.sleep(2 * TICK_S)
        n0 = len(arrived)
        t_send = send(30000.0)  # a count that puts the promenade far above 5 person/m2
        deadline = time.time() + 20
        while time.time() < deadline and not _red(arrived[n0:]):
            time.sleep(0.002)
        hit = _red(arrived[n0:])
        if hit:
            out.append(hit[0] - t_send)
    c.disconnect()
    c.loop_stop()
    svc.stop()
    return out


def _red(messages: list[tuple[float, dict]]) -> list[float]:
    """Arrival times of messages that carry warning level red."""
    return [t for t, m in messages if {"valueName": "warningLevel", "value": "red"} in info_block(m)["parameter"]
            and m["msgType"] != "Cancel"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n, cycles = (20_000, 8) if args.quick else (60_000, 20)
    from twin.district.gridfile import build_grid_file

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        grid = build_grid_file(out=work / "bund10.nc", cell=10.0, district="bund", progress=False)
        with PrivateBroker(work / "broker") as broker:
            base = scenario(broker.port, bare_consumer, "single", n, 1, 3, True)
            threaded = throughput(broker, grid, work, n, 3, receiver="thread")
            live = throughput(broker, grid, work, n, 3, receiver="process")
            lat = latency(broker, grid, work, cycles)
    base_rate = base["messages"] / base["elapsed"]
    print(f"live twin on the Bund at 10 m, tick {TICK_S:g} s, private Mosquitto (deploy/mosquitto.conf), QoS 1")
    print(f"{'consumer':<46}{'messages':>10}{'lost':>6}{'msg/s':>10}")
    print(f"{'(a) bare paho subscriber, counts only':<46}{base['messages']:>10,}{base['lost']:>6}{base_rate:>10,.0f}")
    for label, run in (("(b) live twin, subscriber in a thread", threaded),
                       ("(c) live twin, subscriber in a child process", live)):
        print(f"{label:<46}{run['messages']:>10,}{run['lost']:>6}{run['rate']:>10,.0f}")
    print(f"throughput ratio (b)/(a) = {threaded['rate'] / base_rate:.2f}")
    ratio = live["rate"] / base_rate
    print(f"throughput ratio (c)/(a) = {ratio:.2f} (target >= 0.7): {'met' if ratio >= 0.7 else 'MISSED'}")
    if lat:
        p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
        limit = TICK_S + 0.1
        print(f"alert latency, red crowd count -> CAP on {UNIT}'s topic, {len(lat)} cycles: "
              f"p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, max {max(lat) * 1e3:.0f} ms "
              f"(target p99 <= {limit * 1e3:.0f} ms): {'met' if p99 <= limit else 'MISSED'}")
    else:
        print("alert latency: no alert arrived")
    return 0


if __name__ == "__main__":
    mp.set_start_method("spawn", force=True)
    sys.exit(main())
