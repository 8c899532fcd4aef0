"""Fixtures for the live-service tests: a private Mosquitto, the Bund twin file, an MQTT observer."""

from __future__ import annotations

import json
import queue
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from tests.ingest.conftest import own_broker  # noqa: F401 - the fixture, shared
from twin.district.dataset import save_twin
from twin.district.sources import data_dir

REGISTRY = data_dir() / "bund" / "registry.geojson"


@pytest.fixture
def broker(own_broker):  # noqa: F811 - the imported fixture, by name
    """A private Mosquitto (deploy/mosquitto.conf limits) for one test."""
    return own_broker


@pytest.fixture(scope="session")
def bund_file(bund10, tmp_path_factory):
    ds, buildings = bund10
    return save_twin(tmp_path_factory.mktemp("grid") / "bund10.nc", ds, buildings)


class Observer:
    """Subscribes to everything under a prefix and keeps what arrives, by topic."""

    def __init__(self, port: int, pattern: str = "city/#", protocol: int = mqtt.MQTTv5) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.username_pw_set("observer")  # amqtt (MQTT 3.1.1) wants a username
        self.ready = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(pattern, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.put(True)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.get(timeout=10)

    def _on_message(self, c, u, m) -> None:
        with self.lock:
            self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))

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


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
