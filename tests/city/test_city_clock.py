"""The city clock (twin.city.clock): one tick record into every partition every tick_s, deduplicated by message id
across restarts, failures counted without stopping. MemoryStream for the logic, one test on the real JetStream."""

from __future__ import annotations

import itertools
import threading
import uuid

import pytest

from ingest.stream import MemoryStream, tick_time
from ingest.stream.base import TICK
from tests.support.mqtt import broker_listening
from tests.support.waits import wait_until
from twin.city.clock import CityClock
from twin.live.service import TwinClock

PARTS = ("310101", "310109", "310110", "310115")


class FakeTime:
    """A twin clock the test moves by hand [unix s]."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def ticks(stream: MemoryStream, partition: str) -> list[float]:
    return [tick_time(r) for r in stream.records(partition)]


def test_each_tick_goes_into_every_partition_once_at_whole_multiples_of_tick_s():
    stream, now = MemoryStream(), FakeTime(1025.0)
    clock = CityClock(stream, PARTS, 60.0, now)
    assert clock.step() == 1  # the tick due at start: 1020
    now.t = 1079.0
    assert clock.step() == 0  # nothing new due
    now.t = 1080.0
    assert clock.step() == 1
    now.t = 1141.5
    assert clock.step() == 1
    for p in PARTS:
        records = stream.records(p)
        assert [tick_time(r) for r in records] == [1020.0, 1080.0, 1140.0]
        assert {r.kind for r in records} == {TICK} and {r.data for r in records} == {b""}
    assert (clock.stats.ticks, clock.stats.records, clock.stats.duplicates, clock.stats.last_tick) == (
        3, 3 * len(PARTS), 0, 1140.0)


def test_a_restarted_clock_does_not_double_the_tick_it_may_have_published():
    stream, now = MemoryStream(), FakeTime(7230.0)
    first = CityClock(stream, PARTS, 60.0, now)
    first.step()
    now.t = 7250.0  # restarted within the same tick period
    second = CityClock(stream, PARTS, 60.0, now)
    assert second.step() == 1
    assert second.stats.duplicates == len(PARTS) and second.stats.records == len(PARTS)
    now.t = 7260.0
    second.step()
    assert all(ticks(stream, p) == [7200.0, 7260.0] for p in PARTS)


def test_a_late_clock_catches_up_in_order_and_skips_beyond_max_behind():
    stream, now = MemoryStream(), FakeTime(600.0)
    clock = CityClock(stream, PARTS[:2], 60.0, now, max_behind=3)
    clock.step()
    now.t = 600.0 + 2 * 60
    assert clock.step() == 2
    now.t = 600.0 + 7 * 60  # five ticks due, three published
    assert clock.step() == 3 and clock.stats.skipped == 2
    assert ticks(stream, PARTS[0]) == [600.0, 660.0, 720.0, 900.0, 960.0, 1020.0] == ticks(stream, PARTS[1])


def test_failures_are_counted_and_the_ticks_published_again_without_doubles():
    stream, now = MemoryStream(), FakeTime(120.0)
    clock = CityClock(stream, PARTS, 60.0, now)
    stream.fail_next_flush = True
    assert clock.step() == 0
    assert clock.stats.failures == 1 and "injected" in clock.stats.last_error
    assert all(ticks(stream, p) == [] for p in PARTS)
    now.t = 180.0
    assert clock.step() == 2  # 120 again, then 180
    assert all(ticks(stream, p) == [120.0, 180.0] for p in PARTS)


def test_the_thread_ticks_on_a_replay_clock_and_stops_cleanly():
    stream = MemoryStream()
    clock = CityClock(stream, PARTS, 60.0, TwinClock(speed=1200.0, start=3600.0), retry_s=0.05)  # a tick in 50 ms
    clock.start()
    try:
        wait_until(lambda: len(stream.records(PARTS[-1])) >= 4, 10.0, "four ticks in the last partition")
    finally:
        clock.stop()
    seen = ticks(stream, PARTS[0])
    assert seen[0] == 3600.0 and all(b - a == 60.0 for a, b in itertools.pairwise(seen))
    assert all(ticks(stream, p)[:4] == seen[:4] for p in PARTS)
    stopped = len(stream.records(PARTS[0]))
    assert not any(t.name == "city-clock" for t in threading.enumerate())
    assert len(stream.records(PARTS[0])) == stopped


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="tick_s"):
        CityClock(MemoryStream(), PARTS, 0.0)
    with pytest.raises(ValueError, match="partition"):
        CityClock(MemoryStream(), ["twin.batches.310101"], 60.0)
    with pytest.raises(ValueError, match="at least one"):
        CityClock(MemoryStream(), [], 60.0)


@pytest.mark.broker
@pytest.mark.skipif(not broker_listening(port=4222), reason="no nats-server listens on 127.0.0.1:4222 "
                    "(.ci/run starts one: nats-server -js)")
def test_ticks_on_the_real_jetstream_are_deduplicated_across_a_restart():
    from ingest.stream.jetstream import JetStream

    name = f"TEST_CLOCK_{uuid.uuid4().hex[:10]}"
    stream = JetStream("nats://127.0.0.1:4222", stream=name, subject_prefix=f"test.{name}.", duplicate_window_s=30.0,
                       max_age_s=600.0)
    try:
        stream.ensure(PARTS)
        now = FakeTime(1_767_225_600.0 + 10)
        assert CityClock(stream, PARTS, 60.0, now).step() == 1
        restarted = CityClock(stream, PARTS, 60.0, now)
        assert restarted.step() == 1 and restarted.stats.duplicates == len(PARTS)
        now.t += 60
        assert restarted.step() == 1 and restarted.stats.duplicates == len(PARTS)
        for p in PARTS:
            assert [tick_time(r) for r in stream.read(p, 0, 10, 2.0)] == [1_767_225_600.0, 1_767_225_660.0]
        assert stream.info()["messages"] == 2 * len(PARTS)
    finally:
        stream.delete()
        stream.close()
