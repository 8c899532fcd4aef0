"""Against a real Mosquitto (private, deploy/mosquitto.conf limits): QoS 1 end to end, dead letters,
persistent sessions, MQTT 3.1.1, a broker restart mid-stream and a consumer killed with SIGKILL."""

from __future__ import annotations

import base64
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from ingest.batch import Batch
from ingest.decoders import decode_senml
from ingest.pipeline import IngestConfig, Ingestor
from ingest.rawlog import RawLog, read_log
from ingest.routing import subscriptions
from ingest.transport import Backoff, MqttTransport, parse_broker_url
from ingest.validation import Limits
from tests.support.checkout import REPO, checkout_env
from tests.support.mqtt import broker_listening
from tests.support.waits import wait_until

T0 = time.time()
OPEN = Limits(rate_per_s=0, max_age_s=1e9, max_future_s=1e9)


def crowd_msg(prefix: str, seq: int, devices: int = 10) -> tuple[str, bytes]:
    dev = f"c{seq % devices}"
    payload = json.dumps([{"bn": f"urn:dev:{dev}:", "n": "count", "v": seq, "t": T0 + seq * 0.001}])
    return f"{prefix}sensors/crowd/{dev}", payload.encode()


class Harness:
    """An in-process ingest (transport + log + ingestor) collecting accepted batches."""

    def __init__(self, url, prefix, workdir, client_id, *, registry=None, protocol="5", limits=OPEN):
        self.batches: list[Batch] = []
        self.transport = MqttTransport(
            url,
            client_id=client_id,
            subscriptions=subscriptions(prefix),
            protocol=protocol,
            backoff=Backoff(0.1, 1.0),
        )
        self.log = RawLog(Path(workdir) / "log")
        self.ingestor = Ingestor(
            self.transport,
            self.log,
            registry,
            self.batches.append,
            IngestConfig(prefix=prefix, limits=limits),
        )

    def __enter__(self):
        assert self.transport.start(10), "no CONNACK"
        self.ingestor.start()
        return self

    def __exit__(self, *exc):
        self.ingestor.stop()
        self.transport.stop()
        self.log.close()

    @property
    def metrics(self):
        return self.ingestor.metrics.snapshot()

    def keys(self):
        return Batch.concat(list(self.batches)).keys()


def publisher(url, client_id="pub", protocol="5"):
    p = MqttTransport(
        url, client_id=client_id, protocol=protocol, backoff=Backoff(0.1, 1.0), max_outstanding=5000
    )
    assert p.start(10)
    return p


def values_by_device(logdir):
    seqs = defaultdict(list)
    for rec in read_log(logdir):
        b = decode_senml(rec.payload, topic=rec.topic, received_at=rec.received_at)
        seqs[b.device[0]].extend(int(v) for v in b.value)
    return seqs


def test_url_parsing():
    u = parse_broker_url("mqtts://twin:s%40cret@broker.example:8884")
    assert (u.host, u.port, u.tls, u.username, u.password) == ("broker.example", 8884, True, "twin", "s@cret")
    assert "s@cret" not in repr(u)
    assert parse_broker_url("mqtt://127.0.0.1").port == 1883
    with pytest.raises(ValueError):
        parse_broker_url("http://x")


def test_backoff_is_jittered_exponential():
    b = Backoff(0.5, 8.0)
    for n, cap in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 8.0)]:
        d = [b.delay(n) for _ in range(50)]
        assert all(cap / 2 <= x <= cap for x in d) and len(set(d)) > 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_qos1_messages_reach_log_exactly_once_in_order(broker, prefix, tmp_path, protocol):
    n = 3000 if protocol == "5" else 1000
    with Harness(broker.url, prefix, tmp_path, f"ing-{prefix}", protocol=protocol) as h:
        pub = publisher(broker.url, f"pub-{prefix}", protocol)
        for i in range(n):
            pub.publish(*crowd_msg(prefix, i))
        assert pub.wait_published(30)
        pub.stop()
        wait_until(lambda: h.metrics["accepted_records"] >= n, 60, lambda: f"{n} records accepted: {h.metrics}")
    seqs = values_by_device(tmp_path / "log")
    assert sum(map(len, seqs.values())) == n  # exactly once in the log
    for dev, vals in seqs.items():
        assert vals == sorted(vals), dev  # in order per device
    m = h.metrics
    assert (m["received"], m["accepted_records"], m["duplicates"], m["rejected_total"]) == (n, n, 0, 0)
    assert h.transport.stats.acked == n and m["fsync_max_ms"] > 0


def test_bad_messages_on_deadletter_with_reason(broker, prefix, tmp_path, registry):
    letters: queue.Queue = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dl-{prefix}", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: letters.put(json.loads(m.payload))
    subscribed = threading.Event()
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(f"{prefix}deadletter", qos=1)
    sub.loop_start()
    now = time.time()
    bad = {
        "bad_syntax": (f"{prefix}sensors/crowd/c0", b"{oops"),
        "unknown_device": (f"{prefix}sensors/crowd/ghost", crowd_msg(prefix, 1)[1]),
        "bad_checksum": (
            f"{prefix}beidou/v0",
            b"$GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,156.9,M,8.3,M,,*00",
        ),
        "identity_mismatch": (
            f"{prefix}beidou/v1",
            json.dumps({"id": "v2", "t": now, "lon": 121.49, "lat": 31.24}).encode(),
        ),
        "too_large": (f"{prefix}sensors/rain/r0", b"[" + b" " * 70_000 + b"]"),
        "time_skew": (
            f"{prefix}units/u0/ack",
            json.dumps({"alert": "a", "status": "ack", "t": now + 1e5}).encode(),
        ),
        "bad_unit": (f"{prefix}sensors/water/w0", b'[{"bn":"urn:dev:w0:","n":"depth","u":"ft","v":1}]'),
    }
    assert subscribed.wait(10), "the dead-letter subscription was not acknowledged"
    with Harness(broker.url, prefix, tmp_path, f"ing-{prefix}", registry=registry, limits=Limits()) as h:
        pub = publisher(broker.url, f"pub-{prefix}")
        for topic, payload in bad.values():
            pub.publish(topic, payload)
        pub.publish(
            f"{prefix}sensors/crowd/c3", json.dumps([{"bn": "urn:dev:c3:", "n": "count", "v": 5}]).encode()
        )
        assert pub.wait_published(10)
        pub.stop()
        got = [letters.get(timeout=10) for _ in bad]
        wait_until(lambda: h.metrics["accepted"] == 1, 10, "the one good message accepted")
    sub.loop_stop()
    sub.disconnect()
    assert {d["reason"] for d in got} == set(bad)
    for d in got:
        topic, payload = bad[d["reason"]]
        assert d["topic"] == topic
        assert base64.b64decode(d["payload_b64"]) == payload[:65536]
        assert d["received_at"] > now - 5 and d["detail"]
    assert {k: v for k, v in h.metrics["rejected"].items() if v} == {r: 1 for r in bad}


def test_persistent_session_keeps_offline_messages(broker, prefix, tmp_path):
    cid = f"ing-{prefix}"
    with Harness(broker.url, prefix, tmp_path / "a", cid):
        pass  # creates the session
    pub = publisher(broker.url, f"pub-{prefix}")
    for i in range(500):
        pub.publish(*crowd_msg(prefix, i))
    assert pub.wait_published(10)
    pub.stop()
    with Harness(broker.url, prefix, tmp_path / "b", cid) as h:
        wait_until(lambda: h.metrics["accepted_records"] >= 500, 30, "the 500 messages kept by the session")
    assert len(set(h.keys())) == 500


@pytest.mark.slow
def test_broker_restart_mid_stream_loses_nothing(own_broker, prefix, tmp_path):
    n = 50_000
    with Harness(own_broker.url, prefix, tmp_path, f"ing-{prefix}") as h:
        pub = publisher(own_broker.url, f"pub-{prefix}")

        def stream():
            for i in range(n):
                pub.publish(*crowd_msg(prefix, i, devices=100))

        t = threading.Thread(target=stream)
        t.start()
        wait_until(lambda: h.metrics["received"] >= n // 3, 120, f"a third of the {n} messages received")
        own_broker.restart(down_s=1.0)  # SIGTERM: the broker saves its sessions
        t.join(300)
        assert pub.wait_published(120)
        pub.stop()
        wait_until(lambda: len(set(h.keys())) >= n, 180, lambda: f"all {n} records after the restart: {h.metrics}")
        assert h.transport.stats.connects >= 2
    logged = sum(1 for _ in read_log(tmp_path / "log"))
    m = h.metrics
    assert len(set(h.keys())) == n == m["accepted_records"]  # nothing lost, nothing twice
    assert logged == m["received"] == n + m["duplicates"]  # redeliveries recognised by key
    assert "Error" not in own_broker.log_path.read_text()  # it saved its database


@pytest.mark.slow
def test_consumer_killed_and_restarted_loses_nothing(own_broker, prefix, tmp_path):
    n = 20_000
    cmd = [
        sys.executable,
        "-m",
        "ingest",
        "--broker",
        own_broker.url,
        "--client-id",
        f"ing-{prefix}",
        "--prefix",
        prefix,
        "--log-dir",
        str(tmp_path / "log"),
        "--registry",
        "none",
        "--rate",
        "0",
        "--max-age-s",
        "1e9",
        "--replay",
    ]
    env = checkout_env()

    def start(run):
        metrics = tmp_path / f"metrics{run}.json"
        proc = subprocess.Popen(
            [*cmd, "--sink", str(tmp_path / f"sink{run}.csv"), "--metrics-out", str(metrics)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc, metrics

    def read(metrics):
        try:
            return json.loads(metrics.read_text())
        except (OSError, ValueError):
            return {}

    proc, m1 = start(1)
    wait_until(lambda: read(m1).get("transport", {}).get("connects", 0) >= 1, 30, "the first consumer connected")
    pub = publisher(own_broker.url, f"pub-{prefix}")
    t = threading.Thread(target=lambda: [pub.publish(*crowd_msg(prefix, i)) for i in range(n)])
    t.start()
    wait_until(lambda: read(m1).get("received", 0) >= n // 4, 120, "a quarter of the stream at the first consumer")
    proc.send_signal(signal.SIGKILL)  # no DISCONNECT, no flush
    proc.wait(10)
    t.join(300)
    assert pub.wait_published(60)
    pub.stop()
    proc, m2 = start(2)
    try:
        wait_until(lambda: read(m2).get("accepted_records", 0) >= n, 180,
                   lambda: f"all {n} records at the second consumer: {read(m2)}")
        # no wait here: the counters checked below are the ones written at exit, after the ingest drained
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    final = read(m2)
    logged = [rec for rec in read_log(tmp_path / "log")]
    keys = [tuple(line.split(",")[:4]) for line in (tmp_path / "sink2.csv").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == n  # replay + live: each record once
    assert final["received"] == len(logged)  # replayed log + live redeliveries
    assert final["duplicates"] == len(logged) - n  # every extra copy recognised by key
    assert broker_listening(port=own_broker.port)
