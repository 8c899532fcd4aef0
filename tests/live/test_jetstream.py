"""``JetStream`` against a real nats-server with JetStream: the same semantics as ``MemoryStream`` (dedupe by message
id, one sequence over the partitions, reads from a sequence, last_seq), bounded waits, and a lost connection that
surfaces as a clear exception and heals by itself.

The shared server at 127.0.0.1:4222 (CI starts it) gets one uniquely named stream per test, deleted after it; the
connection-loss test starts a private nats-server of its own.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid

import pytest

from ingest.stream import Ack, Stream, StreamError, StreamTimeoutError
from ingest.stream.jetstream import JetStream
from tests.support.mqtt import broker_listening, free_port, stop_process
from tests.support.waits import wait_until

NATS_URL = "nats://127.0.0.1:4222"
pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not broker_listening(port=4222), reason="no nats-server listens on 127.0.0.1:4222 "
                       "(.ci/run starts one: nats-server -js)"),
]


@pytest.fixture
def js():
    name = f"TEST_{uuid.uuid4().hex[:10]}"
    stream = JetStream(NATS_URL, stream=name, subject_prefix=f"test.{name}.", duplicate_window_s=30.0,
                       max_age_s=600.0)
    stream.ensure(["a", "b"])
    yield stream
    stream.delete()
    stream.close()


def test_it_is_a_stream(js):
    assert isinstance(js, Stream)


def test_a_message_id_is_stored_once_and_the_duplicate_names_the_first(js):
    js.publish("a", b"one", "m1", {"Twin-Kind": "batch"})
    js.publish("b", b"two", "m2")
    js.publish("a", b"one again", "m1")
    assert js.flush(5.0) == [Ack("a", 1, False), Ack("b", 2, False), Ack("a", 1, True)]
    js.publish("b", b"later", "m1")  # a later flush, another partition: still the same id
    assert js.flush(5.0) == [Ack("b", 1, True)]
    records = js.read("a", 0, 10, 1.0)
    assert [(r.seq, r.data, r.headers.get("Twin-Kind")) for r in records] == [(1, b"one", "batch")]
    assert js.info()["messages"] == 2


def test_reads_start_after_any_sequence_and_last_seq_follows(js):
    for i, p in enumerate("abaab"):
        js.publish(p, f"{p}{i}".encode(), f"id{i}")
    js.flush(5.0)
    assert [r.seq for r in js.read("a", 0, 10, 1.0)] == [1, 3, 4]
    assert [r.data for r in js.read("a", 1, 10, 1.0)] == [b"a2", b"a3"]  # moved back: a new consumer
    assert [r.seq for r in js.read("a", 3, 1, 1.0)] == [4]  # continues where the last read ended
    assert [r.seq for r in js.read("b", 2, 5, 1.0)] == [5]
    assert (js.last_seq("a"), js.last_seq("b")) == (4, 5)
    js.publish("c", b"", "c0")
    js.flush(5.0)
    assert js.last_seq("c") == 6 and js.last_seq("never") == 0


def test_a_read_waits_for_the_next_record_and_ends_at_its_timeout(js):
    t0 = time.monotonic()
    assert js.read("a", 0, 10, 0.3) == []
    assert 0.25 <= time.monotonic() - t0 < 3.0
    js.publish("a", b"x", "x")
    js.flush(5.0)
    t0 = time.monotonic()
    assert [r.data for r in js.read("a", 0, 100, 5.0)] == [b"x"]
    assert time.monotonic() - t0 < 3.0  # returned with what there was, not at the timeout


def test_many_records_come_back_in_order(js):
    for i in range(500):
        js.publish("a" if i % 3 else "b", i.to_bytes(4, "big"), f"n{i}")
    acks = js.flush(10.0)
    assert [a.seq for a in acks] == list(range(1, 501)) and not any(a.duplicate for a in acks)
    got, after = [], 0
    while len(got) < 333:
        batch = js.read("a", after, 100, 2.0)
        assert batch, f"only {len(got)} records read"
        got += batch
        after = batch[-1].seq
    assert [int.from_bytes(r.data, "big") for r in got] == [i for i in range(500) if i % 3]


def test_ensure_refuses_a_stream_that_takes_other_subjects(js):
    other = JetStream(NATS_URL, stream=js.stream, subject_prefix="somewhere.else.")
    try:
        with pytest.raises(StreamError, match="exists with subjects"):
            other.ensure([])
    finally:
        other.close()
    js.ensure(["a", "c"])  # idempotent
    with pytest.raises(ValueError, match="bad partition"):
        js.ensure(["a.b"])


def test_publishing_without_a_stream_says_so():
    name = f"TEST_{uuid.uuid4().hex[:10]}"
    with JetStream(NATS_URL, stream=name, subject_prefix=f"none.{name}.") as js:
        js.publish("a", b"", "m")
        with pytest.raises(StreamError, match="no JetStream stream takes"):
            js.flush(5.0)
        with pytest.raises(StreamError, match="does not exist"):
            js.last_seq("a")


def test_a_server_that_cannot_be_reached_fails_at_once():
    t0 = time.monotonic()
    with pytest.raises(StreamError, match="cannot connect"):
        JetStream(f"nats://127.0.0.1:{free_port()}", connect_timeout_s=1.0)
    assert time.monotonic() - t0 < 5.0


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server is not installed")
def test_a_lost_connection_times_out_clearly_and_heals(tmp_path):
    port = free_port()
    cmd = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")]

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: broker_listening(port=port), 10, "the private nats-server to listen")
        return proc

    server = start()
    js = JetStream(f"nats://127.0.0.1:{port}", stream="LOSS", subject_prefix="loss.")
    try:
        js.ensure(["a"])
        js.publish("a", b"before", "m0")
        assert js.flush(5.0) == [Ack("a", 1, False)]
        stop_process(server, signal.SIGKILL, 10)
        wait_until(lambda: not js.connected.is_set(), 10, "the client to notice the lost connection")
        js.publish("a", b"during", "m1")
        with pytest.raises(StreamTimeoutError, match=r"acknowledged 0 of 1 records.*not connected"):
            js.flush(0.5)
        server = start()
        wait_until(js.connected.is_set, 15, "nats-py to reconnect")
        js.publish("a", b"during", "m1")  # the same id again: stored once however often it was sent
        assert js.flush(5.0)[0].seq == 2
        assert [r.data for r in js.read("a", 0, 10, 2.0)] == [b"before", b"during"]
    finally:
        js.close()
        stop_process(server, signal.SIGTERM, 10)
