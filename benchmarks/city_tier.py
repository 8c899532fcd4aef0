"""The city tier's own costs: alert merging per district message, and one city clock round on NATS JetStream.

(a) ``AlertMerger.accept`` for N district CAP alerts (random 20-60 m squares over 4 km x 4 km around the Bund,
    four districts, two hazards), mean time per message while the active set grows to N;
(b) one round of the city clock (a tick into ``--partitions`` partitions, one flush) on a fresh JetStream stream on
    ``--nats`` (deleted after), median and p99 over ``--ticks`` rounds; skipped when no NATS server answers.

    python benchmarks/city_tier.py            # N = 100 and 1000, 16 partitions, 200 ticks
    python benchmarks/city_tier.py --quick    # N = 100, 50 ticks
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shapely

from twin.alerting import cap
from twin.city.boundaries import lonlat, projected
from twin.city.clock import CityClock
from twin.city.merge import AlertMerger

T0 = 1767190921.0
DISTRICTS = ("310101", "310109", "310110", "310115")


def district_alert(district: str, hazard: str, seq: int, area_m: shapely.Geometry, level: int, raised: float) -> dict:
    """A district twin's CAP Alert (docs/contract/cap.md), enough for the merger."""
    key = f"citytwin.{district}.{hazard}.{dt.datetime.fromtimestamp(raised, dt.UTC):%Y%m%dT%H%M%SZ}.{seq:05d}"
    info = {"category": "Met", "event": hazard, "urgency": cap.LEVEL_URGENCY[level],
            "severity": cap.LEVEL_SEVERITY[level], "certainty": "Observed", "onset": cap.cap_time(raised),
            "headline": f"{hazard} {seq}",
            "parameter": cap.name_values([("warningLevel", cap.LEVEL_COLOUR[level]), ("hazard", hazard)]),
            "area": [{"areaDesc": key, "polygon": [cap.polygon_text(list(lonlat(area_m).exterior.coords))]}]}
    return {"identifier": key, "sender": f"twin.{district}@citytwin", "sent": cap.cap_time(raised),
            "status": "Actual", "msgType": "Alert", "scope": "Public",
            "info": [{"language": lang, **info} for lang in cap.LANGUAGES]}


def bench_merge(n: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    origin = projected(shapely.Point(121.4880, 31.2446))
    messages = []
    for k in range(n):
        x, y, w = origin.x + rnd.uniform(0, 4000), origin.y + rnd.uniform(0, 4000), rnd.uniform(20, 60)
        messages.append(district_alert(rnd.choice(DISTRICTS), rnd.choice(("flood", "crowd")), k + 1,
                                       shapely.box(x, y, x + w, y + w), rnd.randint(1, 4), T0 + k))
    merger = AlertMerger()
    t0 = time.perf_counter()
    out = sum(len(merger.accept(m, T0 + 10_000 + k)) for k, m in enumerate(messages))
    seconds = time.perf_counter() - t0
    print(f"merge: {n} district alerts: {seconds / n * 1e3:.2f} ms per message (mean while growing to {n} active), "
          f"{len(merger.cities)} city alerts, {out} city messages")


def bench_clock(url: str, partitions: int, ticks: int) -> None:
    from ingest.stream.base import StreamError
    from ingest.stream.jetstream import JetStream

    name = f"BENCH_CLOCK_{uuid.uuid4().hex[:8]}"
    try:
        stream = JetStream(url, stream=name, subject_prefix=f"bench.{name}.", duplicate_window_s=60, max_age_s=600)
    except StreamError as exc:
        print(f"clock: skipped ({exc})")
        return
    parts = [f"d{k:03d}" for k in range(partitions)]
    now = [1e9]
    clock = CityClock(stream, parts, 1.0, lambda: now[0])
    rounds = []
    try:
        stream.ensure(parts)
        for k in range(ticks):
            now[0] = 1e9 + k
            t0 = time.perf_counter()
            clock.step()
            rounds.append(time.perf_counter() - t0)
    finally:
        stream.delete()
        stream.close()
    rounds.sort()
    print(f"clock: a tick into {partitions} partitions: median {statistics.median(rounds) * 1e3:.2f} ms, "
          f"p99 {rounds[int(0.99 * (len(rounds) - 1))] * 1e3:.2f} ms over {ticks} rounds, "
          f"{clock.stats.records} records, {clock.stats.failures} failures")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--nats", default="nats://127.0.0.1:4222")
    p.add_argument("--partitions", type=int, default=16)
    args = p.parse_args(argv)
    for n in (100,) if args.quick else (100, 1000):
        bench_merge(n)
    bench_clock(args.nats, args.partitions, 50 if args.quick else 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
