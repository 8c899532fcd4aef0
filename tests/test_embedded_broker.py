"""The embedded amqtt broker: the project's transport talks MQTT 3.1.1 to it with the same code paths."""

from __future__ import annotations

import socket
import uuid

import pytest

from ingest.transport.client import MqttTransport
from tests.support.mqtt import subscribed_event
from tests.support.waits import wait_until
from twin.live.broker import EmbeddedBroker


@pytest.fixture
def embedded():
    with EmbeddedBroker() as b:
        yield b


def test_transport_round_trip_and_offline_queue_over_mqtt_311(embedded):
    topic = f"city/test/{uuid.uuid4().hex}"
    sub = MqttTransport(embedded.url, client_id="sub-311", protocol="3.1.1", subscriptions=[topic])
    pub = MqttTransport(embedded.url, client_id="pub-311", protocol="3.1.1")
    subscribed = subscribed_event(sub)
    assert sub.start(10) and pub.start(10)
    assert subscribed.wait(10), "the subscriber's SUBACK did not come"
    pub.publish(topic, b"one", qos=1)
    assert pub.wait_published(10)
    wait_until(lambda: sub.queue.qsize() >= 1, 10, "the message at the subscriber")
    msg = sub.queue.get_nowait()
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"one", 1)
    sub.ack(msg)
    sub.stop()
    # while the persistent subscriber is away, the broker keeps what is published for it
    for k in range(5):
        pub.publish(topic, f"offline-{k}".encode(), qos=1)
    assert pub.wait_published(10)
    again = MqttTransport(embedded.url, client_id="sub-311", protocol="3.1.1", subscriptions=[topic])
    assert again.start(10)
    wait_until(lambda: again.queue.qsize() >= 5, 10, "the 5 messages kept for the resumed session")
    payloads = sorted(again.queue.get_nowait().payload for _ in range(5))
    assert payloads == [f"offline-{k}".encode() for k in range(5)]
    again.stop()
    pub.stop()


def test_stopping_frees_the_port():
    b = EmbeddedBroker().start()
    port = b.port
    b.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # would raise if the broker still held it
