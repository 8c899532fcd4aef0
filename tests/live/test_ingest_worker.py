"""Ingest workers (ingest.worker, twin ingest-worker): routing by district, publishing, exactly-once recovery.

The first tests drive an ``IngestWorker`` group by group on a fake transport and a ``MemoryStream``. The others use
the real services: two workers in one MQTT share group on Mosquitto split the messages, each message to exactly one;
and a worker process killed with SIGKILL under load and restarted leaves every message the broker acknowledged in
the NATS JetStream stream exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from ingest.batch import Batch
from ingest.decoders.senml import encode_senml
from ingest.districts import DistrictRaster, DistrictRouter
from ingest.pipeline import IngestConfig
from ingest.rawlog import RawLog
from ingest.registry import registry_from_geojson
from ingest.routing import subscriptions
from ingest.stream import MemoryStream, StreamError, decode_batch
from ingest.transport import MqttTransport
from ingest.validation import Limits
from ingest.worker import Checkpoint, IngestWorker, WorkerConfig, WorkerStoppedError, movers_of, static_districts
from tests.ingest.conftest import feature
from tests.ingest.fakes import FakeSource
from tests.support.checkout import REPO, checkout_env
from tests.support.mqtt import (
    Flood,
    PrivateBroker,
    broker_listening,
    mosquitto_available,
    stop_process,
    subscribed_event,
    write_messages,
)
from tests.support.waits import wait_until

OPEN = Limits(rate_per_s=0, max_age_s=1e9, max_future_s=1e9)
T0 = 1.7e9
A_POINT, B_POINT = (121.005, 31.005), (121.015, 31.005)


def raster() -> DistrictRaster:
    """Two districts side by side, 0.01 degree cells: A (west) and B (east)."""
    return DistrictRaster(("A", "B"), np.array([[0, 1], [0, 1]], dtype=np.int16), 121.0, 31.0, 0.01, 0.01)


def registry_doc(n_static: int = 20) -> dict:
    feats = [feature(f"s{i}", "crowd", ["count"], {"type": "Point", "coordinates": list(A_POINT if i % 2 == 0
                                                                                        else B_POINT)})
             for i in range(n_static)]
    feats += [feature("far", "crowd", ["count"], {"type": "Point", "coordinates": [125.0, 31.0]})]
    feats += [feature(f"v{i}", "vehicle", ["position"]) for i in range(3)]
    return {"type": "FeatureCollection", "features": feats}


def crowd(device: str, value: float, t: float) -> tuple[str, bytes]:
    return f"city/sensors/crowd/{device}", encode_senml(Batch.build(1, device=device, t=t, quantity="count",
                                                                    value=value))


def position(device: str, lon: float, lat: float, t: float) -> tuple[str, bytes]:
    return f"city/beidou/{device}", json.dumps({"id": device, "t": t, "lon": lon, "lat": lat}).encode()


class Rig:
    """A worker on a fake transport, its raw log in ``state`` and a shared ``MemoryStream``."""

    def __init__(self, state: Path, stream: MemoryStream, worker_id: str = "w1", warm_s: float = 30.0) -> None:
        registry = registry_from_geojson(registry_doc())
        static, _ = static_districts(registry, raster())
        self.source = FakeSource()
        self.log = RawLog(state / "rawlog", fsync=False)
        router = DistrictRouter(raster(), static, movers_of(registry))
        self.worker = IngestWorker(self.source, self.log, registry, stream, router,
                                   WorkerConfig(worker_id, publish_timeout_s=1.0, warm_s=warm_s,
                                                ingest=IngestConfig(limits=OPEN)))

    def group(self, messages: list[tuple[str, bytes]]) -> None:
        """Put the messages on the transport queue and run one group of the ingest loop."""
        for topic, payload in messages:
            self.source.put(topic, payload, received_at=T0)
        assert self.worker.ingestor.run_once(poll_s=0.0) == len(messages)

    def close(self) -> None:
        self.log.close()


def values(stream: MemoryStream, partition: str) -> list[float]:
    return [v for r in stream.records(partition) for v in decode_batch(r.data).value.tolist()]


def test_a_group_is_published_as_one_batch_per_district(tmp_path):
    stream = MemoryStream()
    rig = Rig(tmp_path, stream)
    rig.worker.recover()
    rig.group([crowd("s0", 1, T0), crowd("s1", 2, T0), crowd("s2", 3, T0), position("v0", *B_POINT, T0),
               position("v1", *A_POINT, T0)])
    assert stream.partitions == ["A", "B"]
    (a,), (b,) = stream.records("A"), stream.records("B")
    assert (decode_batch(a.data).device.tolist(), decode_batch(b.data).device.tolist()) == (["s0", "s2", "v1"],
                                                                                           ["s1", "v0"])
    assert a.headers["Twin-Kind"] == "batch" and a.headers["Twin-Records"] == "3"
    end = rig.log.position
    epoch = rig.worker.checkpoint.epoch
    assert stream.read("A", 0, 1, 0)[0] == a
    ids = {p: f"w1:{epoch}-{end.segment}-{end.offset}:{p}" for p in "AB"}
    stream.publish("A", b"", ids["A"])  # the same id again: the stream already has it
    assert stream.flush(1.0)[0].duplicate
    assert rig.worker.checkpoint.acked == end == Checkpoint.load(rig.worker.checkpoint_path).acked
    m = rig.worker.metrics
    assert (m.records_in, m.records_out, m.batches_out, m.groups) == ({"A": 3, "B": 2}, {"A": 3, "B": 2}, 2, 1)
    rig.close()


def test_records_in_no_district_are_dead_lettered_and_counted(tmp_path):
    stream = MemoryStream()
    rig = Rig(tmp_path, stream)
    rig.group([position("v0", 125.0, 31.0, T0), crowd("far", 5, T0), crowd("s0", 1, T0)])
    assert values(stream, "A") == [1.0] and stream.partitions == ["A"]
    assert rig.worker.metrics.dead_letters == {"outside_city": 1, "no_district": 1}
    letters = [json.loads(p) for t, p, _ in rig.source.published if t == "city/deadletter"]
    assert sorted(d["reason"] for d in letters) == ["outside_grid", "outside_grid"]
    assert any("outside every district" in d["detail"] for d in letters)
    ingest = rig.worker.ingestor.metrics.snapshot()
    assert ingest["rejected"]["outside_grid"] == 2 and ingest["accepted"] == 1
    rig.close()


def test_a_failed_publish_is_retried_with_the_same_ids_and_stored_once(tmp_path):
    stream = MemoryStream()
    rig = Rig(tmp_path, stream)
    stream.fail_next_flush = True
    rig.group([crowd("s0", 1, T0)])
    assert values(stream, "A") == [1.0]
    assert rig.worker.metrics.publish_retries == 1 and rig.worker.broken is None
    rig.close()


def test_a_crash_before_the_acks_are_checkpointed_republishes_exactly_once(tmp_path):
    stream = MemoryStream()
    rig = Rig(tmp_path, stream)
    rig.group([crowd("s0", 1, T0), crowd("s1", 2, T0)])
    first = rig.worker.checkpoint
    rig.group([crowd("s2", 3, T0 + 1), crowd("s3", 4, T0 + 1), crowd("s4", 5, T0 + 1)])
    # a crash between the stream's acks of group 2 and the checkpoint: the file still says group 2 is in flight
    in_flight = Checkpoint(first.epoch, first.acked, rig.worker.checkpoint.acked, first.warm)
    in_flight.save(rig.worker.checkpoint_path)
    # ... and a third group logged (and acknowledged to the broker) but never published
    rig.log.append_many([(T0, *crowd("s6", 7, T0 + 2)), (T0, *crowd("s7", 8, T0 + 2))])
    rig.close()
    again = Rig(tmp_path, stream)
    assert again.worker.recover() == 5
    assert sorted(values(stream, "A")) == [1.0, 3.0, 5.0, 7.0]
    assert sorted(values(stream, "B")) == [2.0, 4.0, 8.0]
    assert again.worker.metrics.batches_duplicate == 2  # group 2's two batches, already in the stream
    assert again.worker.checkpoint.acked == again.log.position
    assert again.worker.recover() == 0
    again.close()


def test_a_message_sent_again_after_a_restart_is_not_published_twice(tmp_path):
    stream = MemoryStream()
    rig = Rig(tmp_path, stream)
    rig.group([crowd("s0", 1, T0)])
    rig.close()
    again = Rig(tmp_path, stream)
    again.worker.recover()
    again.group([crowd("s0", 1, T0)])  # the broker never saw our PUBACK and sends it again
    assert values(stream, "A") == [1.0]
    assert again.worker.ingestor.metrics.duplicates == 1
    again.close()


def test_the_dedupe_memory_is_refilled_only_as_far_back_as_warm_s(tmp_path):
    stream = MemoryStream()
    rig = Rig(tmp_path, stream, warm_s=0.0)  # every acked position is at once old enough: nothing is refilled
    rig.group([crowd("s0", 1, T0)])
    rig.group([crowd("s0", 2, T0 + 1)])
    assert rig.worker.checkpoint.warm == rig.worker.checkpoint.acked == rig.log.position
    rig.close()
    again = Rig(tmp_path, stream)
    again.worker.recover()
    again.group([crowd("s0", 1, T0)])  # outside the refilled memory: published again
    assert values(stream, "A") == [1.0, 2.0, 1.0]
    again.close()


def test_stopping_while_the_stream_is_down_leaves_the_group_to_the_next_start(tmp_path):
    stream = MemoryStream()
    rig = Rig(tmp_path, stream)

    class Down(MemoryStream):
        def flush(self, timeout_s):
            self._unflushed = []
            rig.worker.interrupt()
            raise StreamError("NATS is away")

    rig.worker.stream = Down()
    rig.group([crowd("s0", 1, T0)])
    assert rig.worker.broken and rig.worker.ingestor.metrics.sink_errors == 1
    with pytest.raises(WorkerStoppedError):
        rig.worker._sink(Batch.empty())
    rig.close()
    again = Rig(tmp_path, stream)
    again.worker.recover()
    assert values(stream, "A") == [1.0]
    again.close()


def test_a_large_group_is_cut_into_records_the_stream_takes(tmp_path):
    stream = MemoryStream(max_bytes=40_000)
    rig = Rig(tmp_path, stream)
    size = rig.worker.rows_per_record
    n = 3 * size + 10
    pack = Batch.build(n, device="s0", t=T0 + np.arange(n) * 1e-3, quantity="count", value=np.arange(n, dtype=float))
    rig.group([("city/sensors/crowd/s0", encode_senml(pack))])
    records = stream.records("A")
    assert [int(r.headers["Twin-Records"]) for r in records] == [size, size, size, 10]
    assert values(stream, "A") == list(range(n))
    assert all(len(r.data) <= 40_000 for r in records)
    rig.close()


def test_a_chunk_of_long_strings_is_halved_until_it_fits(tmp_path):
    stream = MemoryStream(max_bytes=20_000)
    rig = Rig(tmp_path, stream)
    reports = Batch.build(8, device="s0", t=T0, quantity="count", value=np.arange(8.0), note=[f"{i}" * 6000
                                                                                              for i in range(8)])
    parts = list(rig.worker._chunks(reports, np.arange(8), ""))
    assert [p[0] for p in parts] == [".0.0", ".0.1", ".1.0", ".1.1"]
    assert np.concatenate([p[1] for p in parts]).tolist() == list(range(8))
    assert all(len(p[2]) <= 20_000 - 1024 for p in parts)
    rig.close()


def test_a_control_record_is_taken_at_the_head_of_a_group_which_is_still_published_once(tmp_path):
    from ingest.pipeline import control_message

    stream = MemoryStream()
    rig = Rig(tmp_path, stream)
    for value in (1, 2):
        rig.source.put(*crowd("s0", value, T0 + value), received_at=T0)
    assert rig.worker.ingestor.put_control(control_message("$twin/x", b"", T0))
    assert rig.worker.ingestor.run_once(poll_s=0.0) == 3
    assert values(stream, "A") == [1.0, 2.0] and len(stream.records("A")) == 1 and rig.worker.broken is None
    rig.close()


def test_a_wiped_state_folder_starts_a_new_epoch(tmp_path):
    stream = MemoryStream()
    rig = Rig(tmp_path / "one", stream)
    rig.group([crowd("s0", 1, T0)])
    rig.close()
    other = Rig(tmp_path / "two", stream)  # the same raw-log positions, another epoch: not taken for duplicates
    other.group([crowd("s0", 2, T0 + 5)])
    assert values(stream, "A") == [1.0, 2.0]
    assert rig.worker.checkpoint.epoch != other.worker.checkpoint.epoch
    other.close()


# -- the real services ----------------------------------------------------------------------------------------


needs_mosquitto = pytest.mark.skipif(not broker_listening(), reason="no MQTT broker listens on 127.0.0.1:1883")


@pytest.mark.broker
@needs_mosquitto
def test_two_workers_in_one_share_group_split_the_messages(tmp_path):
    """Two transports in one share group on the machine's Mosquitto: each message reaches exactly one."""
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    group = f"g{uuid.uuid4().hex[:8]}"
    workers = []
    for i in range(2):
        t = MqttTransport("mqtt://127.0.0.1:1883", client_id=f"share-{group}-{i}", subscriptions=subscriptions(prefix),
                          share_group=group, session_expiry_s=60)
        subscribed = subscribed_event(t)
        assert t.start(10) and subscribed.wait(10)
        assert t.subscriptions[0] == f"$share/{group}/{prefix}sensors/+/+"
        workers.append(t)
    n = 400
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", 1883)
    pub.loop_start()
    infos = [pub.publish(f"{prefix}sensors/crowd/c{i % 7}", f"{i}".encode(), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(10)
    got: list[list[str]] = [[], []]
    topics: set[str] = set()

    def drained() -> bool:
        for k, t in enumerate(workers):
            while not t.queue.empty():
                m = t.queue.get_nowait()
                t.ack(m)
                got[k].append(m.payload.decode())
                topics.add(m.topic)
        return len(got[0]) + len(got[1]) >= n

    wait_until(drained, 20, lambda: f"{len(got[0])} + {len(got[1])} of {n} messages")
    pub.loop_stop()
    pub.disconnect()
    for t in workers:
        t.stop(end_session=True)
    assert sorted(map(int, got[0] + got[1])) == list(range(n))  # each message to exactly one worker
    assert got[0] and got[1]  # and both took a share
    assert topics == {f"{prefix}sensors/crowd/c{i}" for i in range(7)}  # the messages' own topics, not $share/...


@pytest.mark.broker
@needs_mosquitto
def test_a_worker_that_leaves_the_group_gets_no_more_of_its_share():
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    group = f"g{uuid.uuid4().hex[:8]}"
    stay, go = (MqttTransport("mqtt://127.0.0.1:1883", client_id=f"leave-{group}-{k}", share_group=group,
                              subscriptions=subscriptions(prefix), session_expiry_s=60) for k in ("stay", "go"))
    for t in (stay, go):
        subscribed = subscribed_event(t)
        assert t.start(10) and subscribed.wait(10)
    unsubscribed = threading.Event()
    go._client.on_unsubscribe = lambda *a: unsubscribed.set()
    go.leave()
    assert unsubscribed.wait(10) and go.subscriptions == ()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", 1883)
    pub.loop_start()
    for i in range(50):
        pub.publish(f"{prefix}sensors/crowd/c0", f"{i}".encode(), qos=1).wait_for_publish(10)
    got = []

    def all_in() -> bool:
        while not stay.queue.empty():
            m = stay.queue.get_nowait()
            stay.ack(m)
            got.append(int(m.payload))
        return len(got) >= 50

    wait_until(all_in, 20, lambda: f"{len(got)} of 50 messages at the worker that stayed")
    pub.loop_stop()
    pub.disconnect()
    assert sorted(got) == list(range(50)) and go.queue.empty()
    for t in (stay, go):
        t.stop(end_session=True)


def _cli(tmp_path, capsys, *extra: str) -> tuple[int, str]:
    from twin.cli.worker import main

    reg, npz = _fault_files(tmp_path)
    args = ["--broker", "mqtt://127.0.0.1:1", "--id", "w1", "--state", str(tmp_path / "s"), "--registry", str(reg),
            "--districts-raster", str(npz), *extra]
    code = main(args)
    return code, capsys.readouterr().err


def test_the_command_refuses_bad_files_in_one_line(tmp_path, capsys):
    code, err = _cli(tmp_path, capsys, "--registry", str(tmp_path / "missing.geojson"))
    assert code == 2 and err.count("\n") == 1 and "--registry" in err
    (tmp_path / "bad.npz").write_bytes(b"x")
    code, err = _cli(tmp_path, capsys, "--districts-raster", str(tmp_path / "bad.npz"))
    assert code == 2 and "not a district raster" in err
    (tmp_path / "map.json").write_text("[1, 2]")
    code, err = _cli(tmp_path, capsys, "--district-map", str(tmp_path / "map.json"))
    assert code == 2 and "must map device ids" in err
    code, err = _cli(tmp_path, capsys, "--status-every", "0")
    assert code == 2 and "positive" in err


def test_the_command_fails_with_status_1_when_nats_cannot_be_reached(tmp_path, capsys):
    from tests.support.mqtt import free_port

    code, err = _cli(tmp_path, capsys, "--nats", f"nats://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot connect to NATS" in err


def test_a_bad_share_group_is_refused():
    with pytest.raises(ValueError, match="share group"):
        MqttTransport("mqtt://127.0.0.1:1883", client_id="x", subscriptions=["a/#"], share_group="a/b")


needs_services = pytest.mark.skipif(
    not (mosquitto_available() and broker_listening(port=4222)),
    reason="needs mosquitto installed and a nats-server -js on 127.0.0.1:4222 (.ci/run starts both)")
FAULT_MESSAGES = 20_000
FAULT_DEVICES = 200


def _fault_files(tmp_path: Path) -> tuple[Path, Path]:
    """A registry of FAULT_DEVICES crowd counters, half in A and half in B, and the raster file."""
    feats = [feature(f"c{i}", "crowd", ["count"], {"type": "Point", "coordinates": list(A_POINT if i % 2 else B_POINT)})
             for i in range(FAULT_DEVICES)]
    reg = tmp_path / "registry.geojson"
    reg.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    npz = tmp_path / "districts.npz"
    raster().save(npz)
    return reg, npz


def _fault_messages(path: Path, t0: float) -> None:
    """FAULT_MESSAGES one-record SenML messages; message i carries the value i (its unique mark)."""
    def gen():
        for i in range(FAULT_MESSAGES):
            dev = f"c{i % FAULT_DEVICES}"
            yield crowd(dev, float(i), t0 + i * 0.001)
    write_messages(path, gen())


class StreamReader:
    """Reads partitions A and B of a JetStream stream from the start and counts every value it finds."""

    def __init__(self, js) -> None:
        self.js = js
        self.after = {"A": 0, "B": 0}
        self.counts: Counter[float] = Counter()

    def poll(self) -> int:
        for p in self.after:
            for r in self.js.read(p, self.after[p], 500, 0.05):
                self.counts.update(decode_batch(r.data).value.tolist())
                self.after[p] = r.seq
        return len(self.counts)


def _worker_cmd(broker_url: str, state: Path, reg: Path, npz: Path, stream: str, group: str) -> list[str]:
    return [sys.executable, "-m", "twin.cli.worker", "--broker", broker_url, "--nats", "nats://127.0.0.1:4222",
            "--id", "w1", "--group", group, "--state", str(state), "--registry", str(reg),
            "--districts-raster", str(npz), "--stream", stream, "--subject-prefix", f"test.{stream}.",
            "--status-every", "0.2"]


@pytest.mark.broker
@pytest.mark.slow
@needs_services
def test_a_worker_killed_under_load_loses_and_duplicates_nothing(tmp_path):
    from ingest.stream.jetstream import JetStream

    reg, npz = _fault_files(tmp_path)
    stream_name = f"TEST_{uuid.uuid4().hex[:10]}"
    group, state = "fault", tmp_path / "state"
    messages = tmp_path / "messages.bin"
    _fault_messages(messages, time.time())
    js = JetStream("nats://127.0.0.1:4222", stream=stream_name, subject_prefix=f"test.{stream_name}.")
    js.ensure(["A", "B"])
    broker = PrivateBroker(tmp_path / "broker").start()
    procs: list[subprocess.Popen] = []
    try:
        # the worker's session and shared subscription exist before the flood: the broker queues everything for it
        pre = MqttTransport(f"mqtt://127.0.0.1:{broker.port}", client_id="citytwin-ingest-w1",
                            subscriptions=subscriptions("city/"), share_group=group)
        subscribed = subscribed_event(pre)
        assert pre.start(10) and subscribed.wait(10)
        pre.stop()
        cmd = _worker_cmd(broker.url, state, reg, npz, stream_name, group)

        def launch() -> subprocess.Popen:
            out = open(tmp_path / f"worker{len(procs) + 1}.log", "wb")  # noqa: SIM115 -- the child's output
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=checkout_env(), cwd=REPO))
            out.close()
            return procs[-1]

        worker = launch()
        flood = Flood(broker.port, messages)
        reader = StreamReader(js)
        kills = []
        for threshold in (3000, 9000):  # two kills mid-stream, each followed by a restart
            wait_until(lambda t=threshold, w=worker: reader.poll() >= t or w.poll() is not None, 60,
                       lambda t=threshold: f"{t} records in the stream ({len(reader.counts)})")
            assert worker.poll() is None, (tmp_path / f"worker{len(procs)}.log").read_text()[-2000:]
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            kills.append(reader.poll())
            worker = launch()
        result = flood.wait(90)
        assert result["published"] == FAULT_MESSAGES  # the broker acknowledged every message
        wait_until(lambda: reader.poll() >= FAULT_MESSAGES or worker.poll() is not None, 90,
                   lambda: f"every acknowledged message in the stream ({len(reader.counts)} of {FAULT_MESSAGES})")
        assert worker.poll() is None, (tmp_path / f"worker{len(procs)}.log").read_text()[-2000:]
        reader.poll()  # anything published after the last value arrived (a duplicate would show up now)
        assert kills[-1] < FAULT_MESSAGES  # the kills came mid-stream
        assert set(reader.counts) == {float(i) for i in range(FAULT_MESSAGES)}  # none lost
        assert [v for v, n in reader.counts.items() if n > 1] == []  # none duplicated
    finally:
        for p in procs:
            stop_process(p, signal.SIGTERM, 15)
        broker.stop()
        js.delete()
        js.close()
