"""Ingest worker throughput: batched SenML through one worker into NATS JetStream, against the bare ingest loop.

One process, no MQTT: a queue pre-filled with SenML packs (``--pack`` records each, devices spread over four
districts) is drained by

(a) the ingest loop alone (``Ingestor``: raw log with fsync, ack, admission) with a sink that does nothing --
    the baseline;
(b) an ingest worker (``IngestWorker``: the same loop, then routing by district, Arrow IPC encoding, checkpoint)
    publishing into a ``MemoryStream`` -- the worker's own CPU cost;
(c) the same worker publishing into NATS JetStream (a fresh stream on ``--nats``, deleted after) -- the
    deployment;

in interleaved rounds (medians reported: other load on the machine then hits every configuration alike). Then
the district side reads everything back from JetStream: (d) with the ``read`` of ``ingest.stream.JetStream`` (a
pull consumer per partition, up to 10,000 stream records a read) and decodes the batches, and (e) with one direct
get per stream message, for comparison. Each line gives records/s and the ratio to (a); loss must be 0 (every
record read back once).

    python benchmarks/stream.py            # 10,000 packs of 100 records (1 M records), 3 rounds
    python benchmarks/stream.py --quick    # 2,000 packs, 1 round
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from ingest.districts import DistrictRaster, DistrictRouter  # noqa: E402
from ingest.pipeline import IngestConfig, Ingestor  # noqa: E402
from ingest.rawlog import RawLog  # noqa: E402
from ingest.registry import registry_from_geojson  # noqa: E402
from ingest.stream import MemoryStream, decode_batch  # noqa: E402
from ingest.transport.client import InboundMessage  # noqa: E402
from ingest.validation import Limits  # noqa: E402
from ingest.worker import IngestWorker, WorkerConfig, movers_of, static_districts  # noqa: E402

DEVICES = 400
DISTRICTS = ("310101", "310106", "310109", "310110")
WEST, SOUTH, CELL = 121.40, 31.20, 0.05


def raster() -> DistrictRaster:
    """Four districts in a 2 x 2 raster of 0.05 degree cells."""
    return DistrictRaster(DISTRICTS, np.array([[0, 1], [2, 3]], dtype=np.int16), WEST, SOUTH, CELL, CELL)


def registry():
    """DEVICES loop detectors, spread evenly over the four districts."""
    feats = []
    for i in range(DEVICES):
        col, row = i % 2, (i // 2) % 2
        lon, lat = WEST + (col + 0.5) * CELL, SOUTH + (row + 0.5) * CELL
        feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                      "properties": {"id": f"loop-{i:03d}", "kind": "traffic", "quantities": ["speed", "flow", "occ"],
                                     "name": f"loop {i}"}})
    return registry_from_geojson({"type": "FeatureCollection", "features": feats})


def pack(i: int, t0: float, size: int) -> tuple[str, bytes]:
    """A detector's buffer of ``size`` speed readings 1 ms apart (SenML, times relative to bt)."""
    dev = f"loop-{i % DEVICES:03d}"
    bt = t0 + i * size * 1e-3
    recs = [f'{{"bn":"urn:dev:{dev}:","bt":{bt:.3f},"bu":"km/h","n":"speed","v":{30 + i % 40},"t":0}}']
    recs += [f'{{"n":"speed","v":{30 + (i + k) % 40}.5,"t":{k * 1e-3:.3f}}}' for k in range(1, size)]
    return f"city/sensors/traffic/{dev}", ("[" + ",".join(recs) + "]").encode()


class QueueSource:
    """A pre-filled inbound queue with the ``Source`` surface (acks and dead letters go nowhere)."""

    def __init__(self, messages: list[tuple[str, bytes]], received_at: float) -> None:
        import queue

        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        for mid, (topic, payload) in enumerate(messages):
            self.queue.put(InboundMessage(topic, payload, 1, mid % 65535 + 1, False, False, received_at, 1))

    def ack(self, msg) -> None:
        pass

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        pass


def drain(ingestor: Ingestor) -> float:
    """Run the loop until the queue is empty; seconds taken."""
    t0 = time.perf_counter()
    while ingestor.run_once(poll_s=0.0):
        pass
    return time.perf_counter() - t0


def config() -> IngestConfig:
    return IngestConfig(limits=Limits(rate_per_s=0, max_age_s=1e9, max_future_s=1e9))


def run_baseline(messages, t0, work: Path) -> float:
    reg = registry()
    with RawLog(work / "baseline") as log:
        ing = Ingestor(QueueSource(messages, t0), log, reg, lambda b: None, config())
        return drain(ing)


def run_worker(messages, t0, work: Path, stream, name: str) -> tuple[float, dict]:
    reg = registry()
    static, _ = static_districts(reg, raster())
    router = DistrictRouter(raster(), static, movers_of(reg))
    with RawLog(work / name) as log:
        worker = IngestWorker(QueueSource(messages, t0), log, reg, stream, router,
                              WorkerConfig(name, ingest=config()))
        worker.recover()
        seconds = drain(worker.ingestor)
        return seconds, worker.metrics.snapshot()


def read_back(js, total: int) -> tuple[float, int, set]:
    """Read every partition with ``JetStream.read``; (seconds, records, distinct (device, t) keys)."""
    t0 = time.perf_counter()
    n, keys = 0, set()
    for d in DISTRICTS:
        after, last = 0, js.last_seq(d)
        while after < last:
            got = js.read(d, after, 10_000, 5.0)
            if not got:
                raise RuntimeError(f"partition {d}: nothing after {after} although the last record is {last}")
            for r in got:
                b = decode_batch(r.data)
                n += len(b)
                keys.update(zip(b.device.tolist(), b.t.tolist(), strict=True))
            after = got[-1].seq
    return time.perf_counter() - t0, n, keys


def direct_gets(url: str, stream: str, subject: str, limit: int) -> tuple[float, int, int]:
    """One ``get_msg(next_by_subject)`` per stream message, at most ``limit``; (seconds, messages, records)."""
    import nats

    async def go() -> tuple[float, int, int]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        t0 = time.perf_counter()
        seq, msgs, recs = 0, 0, 0
        while msgs < limit:
            try:
                m = await js.get_msg(stream, seq + 1, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            seq, msgs = m.seq, msgs + 1
            recs += len(decode_batch(m.data))
        seconds = time.perf_counter() - t0
        await nc.close()
        return seconds, msgs, recs

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 packs instead of 10,000")
    ap.add_argument("--packs", type=int, help="SenML packs (default 10,000; quick 2,000)")
    ap.add_argument("--pack", type=int, default=100, help="records per pack (default 100)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds of (a), (b), (c); medians (default 3, quick 1)")
    ap.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server with JetStream")
    args = ap.parse_args(argv)
    n = args.packs or (2_000 if args.quick else 10_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    t0 = time.time()
    messages = [pack(i, t0 - 3600, args.pack) for i in range(n)]
    total = n * args.pack
    print(f"{n:,} SenML packs of {args.pack} records ({total:,} records, "
          f"{sum(len(p) for _, p in messages) / 1e6:.1f} MB), {DEVICES} devices in {len(DISTRICTS)} districts")
    from ingest.stream.jetstream import JetStream

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        warm = messages[:50]  # decoders and numpy paths warmed up once, outside the timings
        run_baseline(warm, t0, work / "warm")
        run_worker(warm, t0, work / "warm", MemoryStream(), "warm")
        times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        for k in range(args.rounds):  # interleaved, so that other load on the machine hits every configuration
            times["a"].append(run_baseline(messages, t0, work / f"a{k}"))
            times["b"].append(run_worker(messages, t0, work / f"b{k}", MemoryStream(max_records=10_000_000),
                                         "memory")[0])
            name = f"BENCH_{uuid.uuid4().hex[:8]}"
            js = JetStream(args.nats, stream=name, subject_prefix=f"bench.{name}.")
            try:
                seconds, js_m = run_worker(messages, t0, work / f"c{k}", js, "jetstream")
                times["c"].append(seconds)
                if k == args.rounds - 1:
                    read_s, read_n, keys = read_back(js, total)
                    get_s, get_msgs, get_recs = direct_gets(args.nats, name, f"bench.{name}.{DISTRICTS[0]}", 200)
                    info = js.info()
            finally:
                js.delete()
                js.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = total / med["a"]
    rows = [("(a) ingest loop alone (baseline)", total / med["a"], times["a"]),
            ("(b) worker -> MemoryStream", total / med["b"], times["b"]),
            ("(c) worker -> NATS JetStream", total / med["c"], times["c"]),
            ("(d) read back (pull consumer) + decode", read_n / read_s, [read_s]),
            ("(e) read back (direct get) + decode", get_recs / get_s if get_s else 0.0, [get_s])]
    print(f"median of {args.rounds} interleaved rounds")
    print(f"{'':44s} {'records/s':>12s} {'x (a)':>7s}   seconds per round")
    for label, r, secs in rows:
        print(f"{label:44s} {r:12,.0f} {r / rate:7.2f}   {' '.join(f'{x:.2f}' for x in secs)}")
    print(f"JetStream: {info['messages']:,} stream records ({info['bytes'] / 1e6:.1f} MB), "
          f"{js_m['groups']} groups, publish latency mean {js_m['latency_mean_ms']:.1f} ms, "
          f"max {js_m['latency_max_ms']:.1f} ms; direct get: {get_msgs} messages in {get_s:.2f} s")
    lost = total - len(keys)
    dup = read_n - len(keys)
    print(f"read back: {read_n:,} records, {len(keys):,} distinct: lost {lost}, duplicated {dup}")
    return 0 if lost == 0 and dup == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
