"""Ingest throughput against a private Mosquitto with deploy/mosquitto.conf limits (zero loss counted).

Three consumers, each in its own process, each fed by several publisher processes (QoS 1):

(a) bare paho subscriber that only counts (baseline; QoS 1, automatic acks);
(b) our ingest: transport queue, durable raw log with fsync, manual ack after the fsync, routing,
    validation against data/bund/registry.geojson, SenML decoding, dedupe -- small single-record messages;
(c) our ingest with SenML packs of 1,000 records (records/s end to end, and in the decode stage alone).

Wall-clock rates are what the machine gave while the consumer ran; on a machine shared with other work they
fall with the CPU the others take. The CPU-time rates do not: "decode rec/CPU-s" is records per CPU-second of
the ingest thread in the decode stage (``time.thread_time``: decode, validate, dedupe, build the batch), and
"rec/CPU-s e2e" is records per CPU-second of the whole consumer process over the drain (``time.process_time``:
the MQTT network thread, the raw log with its fsyncs, acks and the decode stage; the broker's CPU is not in it).

Every message is counted at the consumer: "lost" must be 0. By default the publishers run first, while
the consumer is offline (its persistent session queues everything in the broker, which the zero-loss
limits allow), and then the consumer's drain is timed alone: on a 2-core machine, publishers running at
the same time take the CPU the consumer needs and the publishers, not the consumer, set the rate.
``--live`` runs publishers and consumer together instead (the consumer then mostly follows the publish
rate). The publish rate column is what the publisher processes achieved into the broker. Each ingest consumer
admits one pack and one single-record message through a throwaway admission step before it is timed (``warm_up``:
what a process does once, on its first message).

    python benchmarks/ingest.py            # full run (a few minutes)
    python benchmarks/ingest.py --quick    # under a minute
    python benchmarks/ingest.py --packs-only   # only (c)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from tests.support.mqtt import PrivateBroker  # noqa: E402

PREFIX = "bench/"
RECEIVE_MAXIMUM = 1000
SINGLE_DEVICES = [f"crowd-bund-{i:02d}" for i in range(1, 13)]
PACK_DEVICES = [f"loop-{i:02d}" for i in range(1, 9)]
TARGET_SINGLE_RATIO = 0.7
TARGET_PACK_RECORDS = 1_000_000


# --- messages -------------------------------------------------------------------------------------


def single_message(i: int, t0: float) -> tuple[str, bytes]:
    """One crowd count, ~90 bytes of SenML."""
    dev = SINGLE_DEVICES[i % len(SINGLE_DEVICES)]
    body = f'[{{"bn":"urn:dev:{dev}:","n":"count","u":"count","v":{i % 5000},"t":{t0 + i * 1e-3:.3f}}}]'
    return f"{PREFIX}sensors/crowd/{dev}", body.encode()


def pack_message(i: int, t0: float, size: int = 1000) -> tuple[str, bytes]:
    """A loop detector's buffer: ``size`` speed readings 1 ms apart, relative to bt (~30 kB)."""
    dev = PACK_DEVICES[i % len(PACK_DEVICES)]
    bt = t0 + i * size * 1e-3
    recs = [f'{{"bn":"urn:dev:{dev}:","bt":{bt:.3f},"bu":"km/h","n":"speed","v":{30 + i % 40},"t":0}}']
    recs += [f'{{"n":"speed","v":{30 + (i + k) % 40}.5,"t":{k * 1e-3:.3f}}}' for k in range(1, size)]
    return f"{PREFIX}sensors/traffic/{dev}", ("[" + ",".join(recs) + "]").encode()


# --- publisher processes ----------------------------------------------------------------------------


def publisher(port: int, kind: str, start: int, stop: int, step: int, t0: float, out: mp.Queue) -> None:
    """Publish messages ``start, start+step, ...`` at QoS 1, at most 10,000 unconfirmed."""
    make = single_message if kind == "single" else pack_message
    msgs = [make(i, t0) for i in range(start, stop, step)]
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{kind}-{start}", protocol=mqtt.MQTTv5
    )
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    pending = []
    t_start = time.perf_counter()
    for topic, payload in msgs:
        pending.append(c.publish(topic, payload, qos=1))
        if len(pending) >= 10_000:
            pending[0].wait_for_publish(60)
            pending = [p for p in pending if not p.is_published()]
    for p in pending:
        p.wait_for_publish(120)
    elapsed = time.perf_counter() - t_start
    c.disconnect()
    c.loop_stop()
    out.put((len(msgs), elapsed))


def run_publishers(port: int, kind: str, n: int, procs: int, t0: float) -> tuple[float, float]:
    """Start ``procs`` publishers for ``n`` messages; returns (messages/s over the slowest, wall s)."""
    out: mp.Queue = mp.Queue()
    ps = [mp.Process(target=publisher, args=(port, kind, k, n, procs, t0, out)) for k in range(procs)]
    t = time.perf_counter()
    for p in ps:
        p.start()
    results = [out.get(timeout=900) for _ in ps]
    for p in ps:
        p.join()
    wall = time.perf_counter() - t
    return sum(r[0] for r in results) / max(r[1] for r in results), wall


# --- consumer processes -----------------------------------------------------------------------------


def _connect_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def bare_consumer(port: int, n: int, ready: mp.Event, go: mp.Event, out: mp.Queue) -> None:
    """Bare paho subscriber that counts messages (QoS 1, automatic acks, persistent session)."""
    state = {"count": 0, "last": 0.0}
    done = threading.Event()

    def on_message(c, u, m):
        state["count"] += 1
        if state["count"] >= n:
            state["last"] = time.perf_counter()
            done.set()

    def connect():
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
        c.on_message = on_message
        c.on_connect = lambda c, u, f, r, p: c.subscribe(f"{PREFIX}sensors/#", qos=1)
        c.connect("127.0.0.1", port, clean_start=False, properties=_connect_props())
        c.loop_start()
        return c

    c = connect()
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()  # session exists; offline messages will be queued (preload)
    ready.set()
    go.wait()
    state["first"] = time.perf_counter()  # timed from the connect, as for the ingest
    c = connect()
    ok = done.wait(900)
    c.disconnect()
    c.loop_stop()
    out.put(
        {
            "messages": state["count"],
            "records": state["count"],
            "elapsed": state["last"] - state["first"],
            "complete": ok,
        }
    )


def warm_up(registry, limits) -> None:
    """Admit a pack and a single-record message through a throwaway admission step, so the timed drain does not
    include what a process does once, on its first message: loading the dedupe's compiled numba kernels from
    their disk cache (about 0.3 CPU-s)."""
    from ingest.admission import Admission

    admission = Admission(registry, limits, prefix=PREFIX, dedupe_keys=10_000)
    t0 = time.time()
    for topic, payload in (pack_message(0, t0), single_message(0, t0)):
        admission.admit(topic, payload, t0)


def ingest_consumer(port: int, n: int, records: int, ready: mp.Event, go: mp.Event, out: mp.Queue) -> None:
    """Our ingest: transport -> raw log (fsync) -> manual ack -> validate, decode, dedupe -> count."""
    from ingest.pipeline import IngestConfig, Ingestor
    from ingest.rawlog import RawLog
    from ingest.registry import load_registry
    from ingest.routing import subscriptions
    from ingest.transport import MqttTransport
    from ingest.validation import Limits

    registry = load_registry(REPO / "data" / "bund" / "registry.geojson")
    state = {"records": 0, "last": 0.0, "decode_s": 0.0, "decode_cpu_s": 0.0, "cpu_last": 0.0}
    done = threading.Event()

    def sink(batch):
        state["records"] += len(batch)
        if state["records"] >= records:
            state["last"] = time.perf_counter()
            state["cpu_last"] = time.process_time()
            done.set()

    limits = Limits(max_age_s=1e9, max_future_s=1e9, rate_per_s=1e6, burst=1e6)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as d, RawLog(d) as raw:

        def make():
            tr = MqttTransport(
                f"mqtt://127.0.0.1:{port}",
                client_id="bench-ingest",
                receive_maximum=RECEIVE_MAXIMUM,
                subscriptions=subscriptions(PREFIX),
            )
            return tr, Ingestor(tr, raw, registry, sink, IngestConfig(prefix=PREFIX, limits=limits))

        tr, ing = make()
        tr.start(10)
        time.sleep(0.5)
        tr.stop()
        warm_up(registry, limits)
        ready.set()
        go.wait()
        tr, ing = make()
        process = ing.process

        def timed_process(*a, **k):
            t, cpu = time.perf_counter(), time.thread_time()
            try:
                return process(*a, **k)
            finally:
                state["decode_s"] += time.perf_counter() - t
                state["decode_cpu_s"] += time.thread_time() - cpu

        ing.process = timed_process
        first = {"t": time.perf_counter(), "cpu": time.process_time()}  # from the connect, as for the bare subscriber
        tr.start(10)
        ing.start()
        ok = done.wait(900)
        ing.stop()
        tr.stop()
        m = ing.metrics.snapshot()
    out.put(
        {
            "messages": m["received"],
            "records": m["accepted_records"],
            "elapsed": state["last"] - first["t"],
            "decode_s": state["decode_s"],
            "decode_cpu_s": state["decode_cpu_s"],
            "cpu_s": state["cpu_last"] - first["cpu"],
            "complete": ok,
            "rejected": m["rejected_total"],
            "duplicates": m["duplicates"],
            "fsync_mean_ms": m["fsync_mean_ms"],
            "fsync_max_ms": m["fsync_max_ms"],
            "commits": m["log_commits"],
        }
    )


# --- one scenario -------------------------------------------------------------------------------------


def scenario(port: int, consumer, kind: str, n: int, per_msg: int, procs: int, preload: bool) -> dict:
    """Run a consumer and the publishers; returns the consumer's result plus publish figures."""
    ready, go, out = mp.Event(), mp.Event(), mp.Queue()
    args = (port, n, ready, go, out) if consumer is bare_consumer else (port, n, n * per_msg, ready, go, out)
    cp = mp.Process(target=consumer, args=args)
    cp.start()
    if not ready.wait(60):
        raise RuntimeError("consumer did not start")
    t0 = time.time()
    if preload:
        pub_rate, _ = run_publishers(port, kind, n, procs, t0)
        go.set()
    else:
        go.set()
        time.sleep(1.0)
        pub_rate, _ = run_publishers(port, kind, n, procs, t0)
    res = _result(out, cp)
    cp.join(30)
    res["publish_rate"] = pub_rate
    res["expected_records"] = n * per_msg
    res["lost"] = n * per_msg - res["records"]
    return res


def _result(out: mp.Queue, proc: mp.Process, timeout_s: float = 900.0) -> dict:
    """The consumer's result; raises ``RuntimeError`` at once if the consumer process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return out.get(timeout=1.0)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"consumer exited with code {proc.exitcode} before reporting") from None
    raise RuntimeError("consumer timed out")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (about a minute)")
    ap.add_argument("--live", action="store_true", help="publish while the consumer runs (default: publish first)")
    ap.add_argument("--publishers", type=int, default=3, help="publisher processes")
    ap.add_argument("--messages", type=int, help="single-record messages (default 100k, quick 30k)")
    ap.add_argument("--packs", type=int, help="1,000-record packs (default 2,000, quick 500)")
    ap.add_argument("--packs-only", action="store_true", help="only (c), the SenML packs")
    args = ap.parse_args(argv)
    n_single = args.messages or (30_000 if args.quick else 100_000)
    n_packs = args.packs or (500 if args.quick else 2_000)
    args.preload = not args.live
    mode = "preloaded backlog, consumer timed alone" if args.preload else "live publishing"
    print(
        f"ingest benchmark: {os.cpu_count()} CPUs, {args.publishers} publisher processes, {mode}, "
        f"Mosquitto with deploy/mosquitto.conf limits, MQTT 5, QoS 1, Receive Maximum {RECEIVE_MAXIMUM}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as d, PrivateBroker(Path(d)) as broker:
        rows = []
        if not args.packs_only:
            rows.append((
                "(a) bare paho subscriber, counts only",
                scenario(broker.port, bare_consumer, "single", n_single, 1, args.publishers, args.preload),
            ))
            rows.append((
                "(b) ingest, single-record messages",
                scenario(broker.port, ingest_consumer, "single", n_single, 1, args.publishers, args.preload),
            ))
        rows.append((
            "(c) ingest, SenML packs of 1,000",
            scenario(broker.port, ingest_consumer, "pack", n_packs, 1000, args.publishers, args.preload),
        ))
    print(
        f"\n{'consumer':40s} {'messages':>9s} {'records':>10s} {'lost':>5s} {'msg/s':>9s} {'records/s':>11s} "
        f"{'decode rec/s':>13s} {'decode rec/CPU-s':>17s} {'rec/CPU-s e2e':>14s} {'publish msg/s':>14s}"
    )
    for label, r in rows:
        rate = r["messages"] / r["elapsed"]
        rec_rate = r["records"] / r["elapsed"]
        dec, dec_cpu, e2e_cpu = (
            f"{r['records'] / r[k]:{w},.0f}" if r.get(k) else f"{'-':>{w}s}"
            for k, w in (("decode_s", 13), ("decode_cpu_s", 17), ("cpu_s", 14))
        )
        print(
            f"{label:40s} {r['messages']:9,d} {r['records']:10,d} {r['lost']:5d} {rate:9,.0f} {rec_rate:11,.0f} "
            f"{dec} {dec_cpu} {e2e_cpu} {r['publish_rate']:14,.0f}"
        )
    c = rows[-1][1]
    if not args.packs_only:
        a, b = rows[0][1], rows[1][1]
        ratio = (b["messages"] / b["elapsed"]) / (a["messages"] / a["elapsed"])
        print(
            f"\nfsync: (b) {b['commits']:,} group commits, mean {b['fsync_mean_ms']:.2f} ms, "
            f"max {b['fsync_max_ms']:.1f} ms;"
            f" (c) {c['commits']:,} commits, mean {c['fsync_mean_ms']:.2f} ms, max {c['fsync_max_ms']:.1f} ms"
        )
        print(
            f"single-record ingest / bare subscriber = {ratio:.2f} (target >= {TARGET_SINGLE_RATIO}): "
            f"{'met' if ratio >= TARGET_SINGLE_RATIO else 'MISSED'}"
        )
    pack_rate = c["records"] / c["elapsed"]
    decode_rate = c["records"] / c["decode_s"]
    print(
        f"packs: {pack_rate:,.0f} records/s end to end, {decode_rate:,.0f} records/s in the decode stage "
        f"(wall clock; target >= {TARGET_PACK_RECORDS:,}): {'met' if decode_rate >= TARGET_PACK_RECORDS else 'MISSED'}"
    )
    print(
        f"packs in CPU time: {c['records'] / c['decode_cpu_s']:,.0f} records per CPU-second of the decode stage, "
        f"{c['records'] / c['cpu_s']:,.0f} per CPU-second of the whole consumer process"
    )
    lost = sum(r["lost"] for _, r in rows)
    print(f"lost messages/records: {lost} ({'zero loss' if lost == 0 else 'LOSS'})")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
