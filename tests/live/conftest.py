"""Fixtures for the live-service tests: a private Mosquitto per test and an MQTT observer (the Bund twin
file, ``bund_file``, is built once per session in tests/conftest.py).

``wait_for(predicate, timeout_s, what)`` is ``tests.support.waits.wait_until``."""

from __future__ import annotations

import json
import queue
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest

from tests.ingest.conftest import own_broker  # noqa: F401 - the fixture, shared
from tests.support.waits import wait_until as wait_for  # noqa: F401 - re-exported for the live tests
from twin.district.sources import data_dir

REGISTRY = data_dir() / "bund" / "registry.geojson"


@pytest.fixture
def broker(own_broker):  # noqa: F811 - the imported fixture, by name
    """A private Mosquitto (deploy/mosquitto.conf limits) for one test."""
    return own_broker


class Observer:
    """Subscribes to everything under a prefix and keeps what arrives, by topic.

    It also subscribes to a topic of its own (``citytwin-test/sync/<id>``, outside the project's topics):
    ``sync()`` publishes a marker there and waits for it. The broker delivers a client's messages in
    order, so once the marker is back, everything the broker had accepted for this observer before it
    (retained messages of the subscription included) has arrived: "no more messages" becomes an event."""

    def __init__(self, port: int, pattern: str = "city/#", protocol: int = mqtt.MQTTv5) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.sync_topic = f"citytwin-test/sync/{uuid.uuid4().hex}"
        self._synced: set[bytes] = set()
        self._sync_cond = threading.Condition(self.lock)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.username_pw_set("observer")  # amqtt (MQTT 3.1.1) wants a username
        self.ready = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(pattern, 1), (self.sync_topic, 1)])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.put(True)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.get(timeout=10)

    def _on_message(self, c, u, m) -> None:
        with self.lock:
            if m.topic == self.sync_topic:
                self._synced.add(bytes(m.payload))
                self._sync_cond.notify_all()
                return
            self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))

    def sync(self, timeout_s: float = 10.0) -> None:
        """Wait until everything the broker accepted for this observer before now has arrived."""
        marker = uuid.uuid4().hex.encode()
        assert self.publish(self.sync_topic, marker), "the sync marker was not accepted by the broker"
        with self._sync_cond:
            if not self._sync_cond.wait_for(lambda: marker in self._synced, timeout_s):
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for the observer's sync marker")

    def on(self, topic_part: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if topic_part in t]

    def json_on(self, topic_part: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic_part) if p]

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1 and wait for the broker; False while the broker is away (the feed goes on)."""
        try:
            self.client.publish(topic, payload, qos=1).wait_for_publish(10)
        except (RuntimeError, ValueError):
            return False
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def observer(broker):
    o = Observer(broker.port)
    yield o
    o.close()


class CrowdFeed:
    """Crowd counts of every counter of the Bund registry and the given units' positions (JSON), five times a
    second, on a thread of its own. ``count`` (settable) is every counter's count, or only ``square``'s when one is
    given (the others then count ``background``)."""

    def __init__(self, observer: Observer, units: dict[str, tuple[float, float]], square: str | None = None,
                 background: float = 5.0) -> None:
        from ingest.registry import load_registry

        self.obs, self.units, self.square, self.background = observer, units, square, background
        self.ids = [d.id for d in load_registry(REGISTRY).of_kind("crowd")]
        self.count = 200.0 if square is None else background
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def count_of(self, device: str) -> float:
        return self.count if self.square in (None, device) else self.background

    def run(self) -> None:
        import time

        from ingest.batch import Batch
        from ingest.decoders.senml import encode_senml

        while not self.stop.is_set():
            t = round(time.time(), 3)
            for d in self.ids:
                self.obs.publish(f"city/sensors/crowd/{d}", encode_senml(
                    Batch.build(1, device=d, t=t, quantity="count", value=self.count_of(d))))
            for u, (lon, lat) in self.units.items():
                self.obs.publish(f"city/beidou/{u}", json.dumps({"id": u, "t": t, "lon": lon, "lat": lat}).encode())
            self.stop.wait(0.2)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(5)
