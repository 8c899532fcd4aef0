"""CI really has a broker: one message round-trips through Mosquitto on 127.0.0.1:1883 with paho."""

from __future__ import annotations

import queue
import uuid

import paho.mqtt.client as mqtt
import pytest

pytestmark = pytest.mark.broker


def test_paho_round_trip_through_local_mosquitto():
    topic = f"citytwin-test/{uuid.uuid4().hex}"
    got: queue.Queue = queue.Queue()
    subscribed = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.put(rcs)
    sub.on_message = lambda c, u, m: got.put((m.topic, m.payload, m.qos))
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    try:
        assert not subscribed.get(timeout=10)[0].is_failure
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", 1883)
        pub.loop_start()
        pub.publish(topic, b"hello twin", qos=1).wait_for_publish(10)
        pub.disconnect()
        pub.loop_stop()
        assert got.get(timeout=10) == (topic, b"hello twin", 1)
    finally:
        sub.disconnect()
        sub.loop_stop()
