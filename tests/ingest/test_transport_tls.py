"""``mqtts://`` with a private CA: the broker URL's ``cafile`` parameter, and a clear refusal of a broker
whose certificate another CA signed (a private Mosquitto with a TLS listener; the CA is made in the test)."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from ingest.transport import MqttTransport, parse_broker_url
from tests.support.mqtt import PrivateBroker, mosquitto_available, subscribed_event
from tests.support.tls import make_ca, tls_tools_available
from tests.support.waits import wait_until

needs_tls_broker = pytest.mark.skipif(not (mosquitto_available() and tls_tools_available()),
                                      reason="needs mosquitto and cryptography or openssl")


@pytest.fixture
def tls_broker(tmp_path):
    """deploy/mosquitto.conf with its listener made TLS (a server certificate from a test CA); yields
    (broker, CA)."""
    ca = make_ca(tmp_path / "ca")
    server = ca.issue(tmp_path / "server", "127.0.0.1", "localhost")
    broker = PrivateBroker(tmp_path / "broker", {"certfile": str(server.cert), "keyfile": str(server.key)})
    broker.start()
    yield broker, ca
    broker.stop()


def test_the_ca_file_is_a_parameter_of_the_broker_url(tmp_path):
    u = parse_broker_url("mqtts://twin:pw@broker.example:8884?cafile=/etc/citytwin/ca%20bundle.pem")
    assert (u.tls, u.port, u.cafile) == (True, 8884, "/etc/citytwin/ca bundle.pem")
    assert "cafile=/etc/citytwin/ca bundle.pem" in repr(u) and "pw" not in repr(u)
    assert parse_broker_url("mqtts://broker.example").cafile is None
    for bad in ("mqtt://broker.example?cafile=/ca.pem",  # TLS only
                "mqtts://broker.example?cafile=",
                "mqtts://broker.example?cafile=/a.pem&cafile=/b.pem",
                "mqtts://broker.example?ca_file=/ca.pem"):  # a typo is refused, not ignored
        with pytest.raises(ValueError, match="broker URL"):
            parse_broker_url(bad)
    with pytest.raises(ValueError, match="does not exist"):
        MqttTransport(f"mqtts://127.0.0.1:1?cafile={tmp_path / 'missing.pem'}", client_id="x")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ValueError, match="no usable PEM"):
        MqttTransport(f"mqtts://127.0.0.1:1?cafile={tmp_path / 'junk.pem'}", client_id="x")


@needs_tls_broker
def test_mqtts_with_the_ca_file_in_the_url_carries_messages_both_ways(tls_broker):
    broker, ca = tls_broker
    url = f"{broker.url}?cafile={ca.cert}"
    assert url.startswith("mqtts://127.0.0.1:")
    topic = f"city/test/{uuid.uuid4().hex}"
    sub = MqttTransport(url, client_id=f"tls-sub-{uuid.uuid4().hex[:6]}", subscriptions=[topic])
    pub = MqttTransport(url, client_id=f"tls-pub-{uuid.uuid4().hex[:6]}")
    subscribed = subscribed_event(sub)
    try:
        assert sub.start(10) and pub.start(10), (sub.stats.last_reason, pub.stats.last_reason)
        assert subscribed.wait(10)
        pub.publish(topic, b"over tls", qos=1)
        assert pub.wait_published(10)
        wait_until(lambda: sub.queue.qsize() >= 1, 10, "the message over TLS")
        msg = sub.queue.get_nowait()
        assert (msg.topic, msg.payload) == (topic, b"over tls")
        sub.ack(msg)
        sub.publish(f"{topic}/reply", b"from the subscriber", qos=1)  # its publisher connection, over TLS too
        assert sub.wait_published(10)
        assert sub.stats.tls_failures == 0 and sub.stats.publisher_connects == 1
    finally:
        sub.stop()
        pub.stop()


@needs_tls_broker
@pytest.mark.parametrize("trust", ["another CA", "the system's CAs"])
def test_a_broker_certificate_the_ca_file_does_not_verify_is_refused_with_a_clear_error(tls_broker, tmp_path, caplog,
                                                                                        trust):
    broker, _ = tls_broker
    url = broker.url
    if trust == "another CA":
        other = make_ca(tmp_path / "other", name="some other CA")
        url = f"{broker.url}?cafile={other.cert}"
    caplog.set_level(logging.ERROR, logger="ingest.transport.client")
    tr = MqttTransport(url, client_id=f"tls-wrong-{uuid.uuid4().hex[:6]}", subscriptions=["city/#"])
    t0 = time.monotonic()
    try:
        assert not tr.start(10), "connected to a broker whose certificate does not verify"
        waited = time.monotonic() - t0
    finally:
        tr.stop()
    assert waited < 5, f"start waited {waited:.1f} s for a connection that cannot succeed"
    assert tr.stats.tls_failures >= 1 and tr.stats.connects == 0
    reason = tr.stats.last_reason
    assert reason.startswith("TLS: the certificate of the broker "), reason
    assert "does not verify" in reason and f"127.0.0.1:{broker.port}" in reason
    assert (str(tmp_path / "other" / "ca.crt") if trust == "another CA" else "system's CAs") in reason
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert reason in errors, errors
