"""Floods and backlogs do not stop the live twin (issue 13; docs/liveness.md).

Before issue 13 a burst of bad messages or a backlog after an outage stopped the twin for good: paho's
network thread slept while the inbound queue was full, and the ingest thread waited 10 s per dead letter
for a PUBACK only that sleeping thread could read. These tests flood a private Mosquitto (deploy/mosquitto.conf)
from a child process speaking raw MQTT (tests/support/mqtt.py: ``Flood``) and check that the twin

* keeps ticking while flooded (a tick report at least every ``MAX_TICK_GAP`` ticks of wall time),
* drains the backlog and loses nothing (every published payload is in the raw log, ``received`` equals
  what was published, every rejection is dead-lettered or counted as dropped),
* stops (``LiveService.stop``, what SIGTERM calls) within 5 s in the middle of a flood, and the messages
  it left unacknowledged reach the next session,
* restarts on a backlog of 100,000 messages queued by the broker during an outage and drains it ticking.

Measured figures (2 shared cores) are in docs/liveness.md.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from ingest.batch import Batch
from ingest.decoders.nmea import encode_nmea
from ingest.decoders.senml import encode_senml
from ingest.rawlog import read_log
from ingest.registry import load_registry
from ingest.validation import Limits
from tests.live.conftest import REGISTRY
from tests.support.mqtt import Flood, read_messages, subscribed_event, write_messages
from tests.support.waits import TickWatch, wait_until
from twin.live.core import CoreConfig
from twin.live.service import LiveService, ServiceConfig

pytestmark = [pytest.mark.slow, pytest.mark.broker]

N_FLOOD = 200_000
N_MIDFLOOD = 60_000
N_BACKLOG = 100_000
TICK = 0.5
"""Tick period [s of wall time] (clock speed 1)."""
MAX_TICK_GAP = 5
"""Most tick periods between two tick reports while flooded (measured: 2.1)."""
STOP_S = 5.0
MARKER = 4242.0
"""A crowd count no flood message carries: its arrival means everything published before it arrived."""

CROWD = [d.id for d in load_registry(REGISTRY).of_kind("crowd")]
UNITS = [d.id for d in load_registry(REGISTRY).of_kind("unit")]


def flood_messages(n: int, t0: float, invalid_every: int) -> Iterator[tuple[str, bytes]]:
    """``n`` distinct messages: crowd counts of the Bund's counters (SenML), and every ``invalid_every``-th
    one bad in turn: an unknown device, bad syntax, an NMEA sentence with a bad checksum. Record times go
    back from ``t0`` in 1 ms steps, so no two readings of a device share a dedupe key."""
    for i in range(n):
        t = t0 - i * 1e-3
        if invalid_every and i % invalid_every == 0:
            bad = (i // invalid_every) % 3
            if bad == 0:
                dev = f"ghost-{i % 97}"
                yield f"city/sensors/crowd/{dev}", encode_senml(
                    Batch.build(1, device=dev, t=t, quantity="count", value=5.0))
            elif bad == 1:
                yield f"city/sensors/crowd/{CROWD[i % len(CROWD)]}", b"\x00not senml %d" % i
            else:
                unit = UNITS[i % len(UNITS)]
                good = encode_nmea(Batch.build(1, device=unit, t=float(int(t0) - i), lon=121.49, lat=31.24,
                                               speed_kmh=3.0, course_deg=90.0, fix=1, hdop=0.9, quantity="position"),
                                   talker="BD")
                rmc = good.split(b"\r\n")[1]  # RMC carries the date: distinct over more than a day of seconds
                star = rmc.rindex(b"*")
                wrong = b"%02X" % (int(rmc[star + 1:star + 3], 16) ^ 0x5A)
                yield f"city/beidou/{unit}", rmc[:star + 1] + wrong + b"\r\n"
        else:
            dev = CROWD[i % len(CROWD)]
            yield f"city/sensors/crowd/{dev}", encode_senml(Batch.build(1, device=dev, t=t, quantity="count",
                                                                         value=100.0))


def _config(broker, bund_file, state: Path, client_id: str) -> ServiceConfig:
    # rate limiting off: the flood's valid share is accepted, so the core takes real batches while flooded; the
    # subscriber in a child process, as twin run has it (docs/liveness.md section 8)
    return ServiceConfig(broker=broker.url, grid=bund_file, registry=REGISTRY, state_dir=state, tick_s=TICK,
                         client_id=client_id, snapshot_every_s=10.0, core=CoreConfig(tick_s=TICK),
                         limits=Limits(rate_per_s=0), receiver="process")


def _start(cfg: ServiceConfig) -> LiveService:
    svc = LiveService(cfg)
    subscribed = subscribed_event(svc.transport)
    assert svc.start(10), "the service did not connect"
    assert subscribed.wait(10), "the service's subscription was not acknowledged"
    return svc


class TickClock:
    """Wall times [monotonic s] of a service's tick reports (a tick listener)."""

    def __init__(self, svc: LiveService) -> None:
        self.times: list[float] = []
        svc.listeners.append(lambda report: self.times.append(time.monotonic()))

    def max_gap(self, start: float, end: float) -> float:
        """Longest wait between tick reports in [start, end] (its ends included) [s]."""
        marks = [start, *(t for t in self.times if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(marks))


def logged(state: Path) -> Counter[bytes]:
    """Payloads in a service's raw log (control records left out), with their counts."""
    return Counter(r.payload for r in read_log(state / "rawlog") if not r.topic.startswith("$twin/"))


def publish_marker(port: int, t: float) -> None:
    """One crowd count of ``MARKER`` at time ``t``, confirmed by the broker."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood-marker", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        payload = encode_senml(Batch.build(1, device=CROWD[0], t=t, quantity="count", value=MARKER))
        c.publish(f"city/sensors/crowd/{CROWD[0]}", payload, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def marker_seen(svc: LiveService) -> bool:
    readings = svc.core.state.readings["crowd"]
    value, _ = readings.latest("count")
    return bool(value[readings.index[CROWD[0]]] == MARKER)


def progress(svc: LiveService, total: int) -> str:
    m, st = svc.ingestor.metrics, svc.transport.stats
    return (f"{m.received} of {total} received; queue {svc.transport.queue.qsize()}, outstanding publishes "
            f"{svc.transport.outstanding}, dead letters {m.deadletters} (+{svc.ingestor.deadletters_dropped} dropped), "
            f"queue-full waits {st.queue_full_waits}")


def test_a_flood_of_200k_messages_keeps_the_twin_ticking_loses_nothing_and_stops_within_5_s(
        broker, bund_file, tmp_path):
    t0 = time.time()
    n_bad = len(range(0, N_FLOOD, 2))
    assert write_messages(tmp_path / "flood.bin", flood_messages(N_FLOOD, t0, 2)) == N_FLOOD  # half of them bad
    published = Counter(p for _, p in read_messages(tmp_path / "flood.bin"))
    assert len(published) == N_FLOOD, "every flood payload is distinct"
    state = tmp_path / "state"
    svc = _start(_config(broker, bund_file, state, "twin-flood"))
    clock = TickClock(svc)
    try:
        with TickWatch(svc) as ticks:
            ticks.next(2, 20, "two ticks before the flood")
            start = time.monotonic()
            flood = Flood(broker.port, tmp_path / "flood.bin")
            wait_until(lambda: svc.ingestor.metrics.received >= N_FLOOD, 300, lambda: progress(svc, N_FLOOD))
            drained = time.monotonic()
            sent = flood.wait(60)
            ticks.next(1, 10, "a tick after the drain")
        gap = clock.max_gap(start, drained)
        assert gap <= MAX_TICK_GAP * TICK, f"no tick report for {gap:.2f} s while flooded"
        wait_until(lambda: svc.transport.outstanding == 0, 30, lambda: progress(svc, N_FLOOD))
        m = svc.ingestor.metrics.snapshot()
        stats = svc.transport.stats
        print(f"\nflood: {N_FLOOD} published in {sent['seconds']:.1f} s ({N_FLOOD / sent['seconds']:,.0f}/s); "
              f"drained in {drained - start:.1f} s ({N_FLOOD / (drained - start):,.0f}/s); longest tick gap "
              f"{gap:.2f} s; dead letters {m['deadletters']}, dropped {svc.ingestor.deadletters_dropped}; "
              f"queue-full waits {stats.queue_full_waits} ({stats.queue_full_wait_s:.2f} s)")
        assert m["received"] == N_FLOOD and m["duplicates"] == 0
        assert m["accepted"] == N_FLOOD - n_bad and m["rejected_total"] == n_bad
        assert {k: v for k, v in m["rejected"].items() if v} == {
            "unknown_device": len(range(0, N_FLOOD, 6)), "bad_syntax": len(range(2, N_FLOOD, 6)),
            "bad_checksum": len(range(4, N_FLOOD, 6))}
        # nothing silent: every rejection went to city/deadletter or was counted as dropped
        assert m["deadletters"] + svc.ingestor.deadletters_dropped == n_bad
        assert stats.publish_refused == 0, "no publish of the outbox or the status was refused"
        assert logged(state) == published, "the raw log holds every published message, once"

        # the second flood: stop in its middle (what SIGTERM does); the rest reaches the next session
        assert write_messages(tmp_path / "mid.bin", flood_messages(N_MIDFLOOD, t0 - 1000.0, 2)) == N_MIDFLOOD
        flood = Flood(broker.port, tmp_path / "mid.bin", client_id="flood-2")
        wait_until(lambda: svc.ingestor.metrics.received >= N_FLOOD + N_MIDFLOOD // 4, 120,
                   lambda: progress(svc, N_FLOOD + N_MIDFLOOD))
        begin = time.monotonic()
    except BaseException:
        svc.stop()
        raise
    svc.stop()
    stop_s = time.monotonic() - begin
    print(f"stop in the middle of a flood: {stop_s:.2f} s; {svc.transport.stats.left_unacked} messages left "
          f"unacknowledged for the next session")
    assert stop_s <= STOP_S, f"stop took {stop_s:.2f} s in the middle of a flood"
    flood.wait(120)
    publish_marker(broker.port, time.time())
    again = _start(_config(broker, bund_file, tmp_path / "state2", "twin-flood"))  # same session, new log
    try:
        wait_until(lambda: marker_seen(again), 120, lambda: progress(again, N_MIDFLOOD))
    finally:
        again.stop()
    mid = Counter(p for _, p in read_messages(tmp_path / "mid.bin"))
    both = logged(state) + logged(tmp_path / "state2")
    assert not [p for p in mid if p not in both], "every message of the interrupted flood reached a session"


def test_a_restart_on_a_backlog_of_100k_messages_ticks_and_drains_it(broker, bund_file, tmp_path):
    state = tmp_path / "state"
    cfg = _config(broker, bund_file, state, "twin-backlog")
    svc = _start(cfg)  # makes the persistent session
    svc.stop()
    assert write_messages(tmp_path / "backlog.bin", flood_messages(N_BACKLOG, time.time(), 10)) == N_BACKLOG
    published = Counter(p for _, p in read_messages(tmp_path / "backlog.bin"))
    sent = Flood(broker.port, tmp_path / "backlog.bin").wait(120)  # the broker queues them for the away twin
    svc = LiveService(cfg)
    before = svc.ingestor.metrics.received
    clock = TickClock(svc)
    start = time.monotonic()
    assert svc.start(10)
    try:
        with TickWatch(svc) as ticks:
            wait_until(lambda: svc.ingestor.metrics.received - before >= N_BACKLOG, 300,
                       lambda: progress(svc, N_BACKLOG))
            drained = time.monotonic()
            ticks.next(1, 10, "a tick after the drain")
        gap = clock.max_gap(start, drained)
        print(f"\nbacklog: {N_BACKLOG} queued in {sent['seconds']:.1f} s; drained after the restart in "
              f"{drained - start:.1f} s ({N_BACKLOG / (drained - start):,.0f}/s); longest tick gap {gap:.2f} s; "
              f"queue-full waits {svc.transport.stats.queue_full_waits}")
        assert gap <= MAX_TICK_GAP * TICK, f"no tick report for {gap:.2f} s while draining the backlog"
        n_bad = len(range(0, N_BACKLOG, 10))
        m = svc.ingestor.metrics.snapshot()
        assert m["received"] - before == N_BACKLOG and m["duplicates"] == 0
        assert m["accepted"] == N_BACKLOG - n_bad and m["rejected_total"] == n_bad
        wait_until(lambda: svc.transport.outstanding == 0, 30, lambda: progress(svc, N_BACKLOG))
        assert svc.ingestor.metrics.deadletters + svc.ingestor.deadletters_dropped == n_bad
        assert svc.transport.stats.session_lost == 0, "the broker kept the session through the outage"
    finally:
        svc.stop()
    assert logged(state) == published, "the raw log holds every message of the backlog, once"


def test_the_flood_generator_makes_what_the_flood_tests_count():
    msgs = list(flood_messages(12, 1.7e9, 2))
    assert len({p for _, p in msgs}) == 12
    assert [t.split("/")[-1].startswith("ghost-") for t, _ in msgs[::6]] == [True, True]
    assert msgs[4][0].startswith("city/beidou/") and msgs[4][1].startswith(b"$BDRMC")
