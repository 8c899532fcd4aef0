"""``MemoryStream``: the stream semantics the workers rely on (dedupe by message id within a window, one sequence
over all partitions, reads from a sequence, last_seq), also as a model checked against random operations."""

from __future__ import annotations

import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ingest.stream import Ack, MemoryStream, Stream, StreamError, StreamTimeoutError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_it_is_a_stream():
    assert isinstance(MemoryStream(), Stream)


def test_sequences_are_global_and_reads_start_after_a_sequence():
    s = MemoryStream()
    for i, p in enumerate(["a", "b", "a", "a", "b"]):
        s.publish(p, f"{p}{i}".encode(), f"id{i}")
    acks = s.flush(1.0)
    assert acks == [Ack("a", 1, False), Ack("b", 2, False), Ack("a", 3, False), Ack("a", 4, False),
                    Ack("b", 5, False)]
    assert [r.seq for r in s.read("a", 0, 10, 0.0)] == [1, 3, 4]
    assert [r.data for r in s.read("a", 1, 10, 0.0)] == [b"a2", b"a3"]
    assert [r.seq for r in s.read("a", 3, 1, 0.0)] == [4]
    assert s.read("a", 4, 10, 0.0) == []
    assert (s.last_seq("a"), s.last_seq("b"), s.last_seq("c")) == (4, 5, 0)


def test_a_message_id_is_stored_once_within_the_window_and_again_after_it():
    clock = Clock()
    s = MemoryStream(duplicate_window_s=60.0, clock=clock)
    s.publish("a", b"x", "m1", {"Twin-Kind": "batch"})
    s.publish("a", b"other bytes", "m1")
    assert s.flush(1.0) == [Ack("a", 1, False), Ack("a", 1, True)]
    clock.now += 59.0
    s.publish("b", b"x", "m1")
    assert s.flush(1.0) == [Ack("b", 1, True)]  # the partition published to, the sequence of the first
    clock.now += 2.0  # 61 s after the first: forgotten
    s.publish("a", b"x", "m1")
    assert s.flush(1.0) == [Ack("a", 2, False)]
    assert [(r.seq, r.data, dict(r.headers)) for r in s.records("a")] == [
        (1, b"x", {"Twin-Kind": "batch"}), (2, b"x", {})]


def test_old_records_age_out_and_the_bound_holds():
    clock = Clock()
    s = MemoryStream(max_age_s=100.0, max_records=3, clock=clock)
    for i in range(5):
        s.publish("a", b"", f"m{i}")
    s.flush(1.0)
    assert [r.seq for r in s.records("a")] == [3, 4, 5]
    clock.now += 101.0
    s.publish("b", b"", "late")
    s.flush(1.0)
    assert s.records("a") == [] and [r.seq for r in s.records("b")] == [6]


def test_a_read_waits_for_the_first_record_and_returns_at_its_timeout():
    s = MemoryStream()
    assert s.read("a", 0, 5, 0.05) == []
    got: list = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        got.extend(s.read("a", 0, 5, 10.0))

    t = threading.Thread(target=reader)
    t.start()
    started.wait(5)
    s.publish("a", b"late", "m")
    s.flush(1.0)
    t.join(10)
    assert not t.is_alive() and [r.data for r in got] == [b"late"]


def test_an_injected_failure_stores_nothing_and_a_retry_stores_once():
    s = MemoryStream()
    s.publish("a", b"x", "m1")
    s.fail_next_flush = True
    with pytest.raises(StreamTimeoutError):
        s.flush(1.0)
    assert s.records("a") == []
    s.publish("a", b"x", "m1")
    assert s.flush(1.0) == [Ack("a", 1, False)]


@pytest.mark.parametrize("call", [
    lambda s: s.publish("a.b", b"", "m"),
    lambda s: s.publish("", b"", "m"),
    lambda s: s.publish("a", b"", "has space"),
    lambda s: s.publish("a", b"", ""),
    lambda s: s.read("*", 0, 1, 0.0),
    lambda s: s.ensure(["ok", "not>ok"]),
])
def test_bad_partitions_and_ids_are_refused(call):
    with pytest.raises(ValueError):
        call(MemoryStream())


def test_a_closed_stream_refuses_use():
    s = MemoryStream()
    s.close()
    with pytest.raises(StreamError, match="closed"):
        s.publish("a", b"", "m")


class StreamModel(RuleBasedStateMachine):
    """Random publishes (ids reused), flushes, reads and clock steps against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.stream = MemoryStream(duplicate_window_s=10.0, clock=self.clock)
        self.stored: dict[str, list[tuple[int, bytes]]] = {}
        self.ids: dict[str, tuple[float, str, int]] = {}
        self.pending: list[tuple[str, bytes, str]] = []
        self.seq = 0

    @rule(p=st.sampled_from("ab"), data=st.binary(max_size=3), msg_id=st.sampled_from([f"m{i}" for i in range(6)]))
    def publish(self, p, data, msg_id):
        self.stream.publish(p, data, msg_id)
        self.pending.append((p, data, msg_id))

    @rule()
    def flush(self):
        expected = []
        now = self.clock.now
        self.ids = {k: v for k, v in self.ids.items() if now - v[0] <= 10.0}
        for p, data, msg_id in self.pending:
            if msg_id in self.ids:
                expected.append(Ack(p, self.ids[msg_id][2], True))
                continue
            self.seq += 1
            self.ids[msg_id] = (now, p, self.seq)
            self.stored.setdefault(p, []).append((self.seq, data))
            expected.append(Ack(p, self.seq, False))
        self.pending = []
        assert self.stream.flush(1.0) == expected

    @rule(step=st.floats(0.0, 8.0))
    def tick(self, step):
        self.clock.now += step

    @rule(p=st.sampled_from("ab"), after=st.integers(0, 30), n=st.integers(1, 5))
    def read(self, p, after, n):
        want = [x for x in self.stored.get(p, []) if x[0] > after][:n]
        assert [(r.seq, r.data) for r in self.stream.read(p, after, n, 0.0)] == want

    @invariant()
    def last_seq(self):
        for p in "ab":
            assert self.stream.last_seq(p) == (self.stored[p][-1][0] if self.stored.get(p) else 0)


TestStreamModel = StreamModel.TestCase
TestStreamModel.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
