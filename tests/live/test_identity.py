"""The twin's client id and session (issue 13, identity).

* deploy/mosquitto-secure.conf (TLS, one password file per listener, ``use_username_as_clientid`` on the
  device listener): a device that connects with the twin's client id does not take over its session --
  the twin stays connected, and what is queued for it while it is away survives;
* deploy/mosquitto.conf (anonymous, for tests and demos): a takeover is possible, and the transport raises
  the alarm -- Mosquitto 2.0.11 closes the old connection without a DISCONNECT, so the transport sees it
  as a reconnect that finds no session (``stats.session_lost``);
* a broker that says so (MQTT 5 DISCONNECT 0x8E "Session taken over"): ``stats.session_taken_over``.
"""

from __future__ import annotations

import logging
import shutil
import socket
import struct
import subprocess
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest

from ingest.transport import Backoff, MqttTransport
from tests.support.mqtt import REPO, PrivateBroker, free_port, mosquitto_available, subscribed_event
from tests.support.tls import make_ca, tls_tools_available
from tests.support.waits import wait_until

SECURE_CONF = REPO / "deploy" / "mosquitto-secure.conf"
TWIN_ID = "citytwin-bund"
DEVICE, DEVICE_PW = "crowd-bund-01", "device-pw"
TWIN_USER, TWIN_PW = "citytwin", "twin-pw"
READING = b'[{"bn":"urn:dev:crowd-bund-01:","n":"count","v":1}]'

needs_tools = pytest.mark.skipif(
    not (mosquitto_available() and shutil.which("mosquitto_passwd") and tls_tools_available()),
    reason="needs mosquitto, mosquitto_passwd and cryptography or openssl")


@pytest.fixture
def secure(tmp_path):
    """A private Mosquitto from deploy/mosquitto-secure.conf with a test CA, one device account on the
    device listener and the twin's account on the service listener; yields (broker, CA file)."""
    ca = make_ca(tmp_path / "ca")
    server = ca.issue(tmp_path / "server", "127.0.0.1", "localhost")
    devices, services = tmp_path / "passwd", tmp_path / "passwd-services"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(devices), DEVICE, DEVICE_PW], check=True)
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(services), TWIN_USER, TWIN_PW], check=True)
    broker = PrivateBroker(tmp_path / "broker", {
        "certfile": str(server.cert), "keyfile": str(server.key),
        "password_file": (str(devices), str(services)), "acl_file": str(REPO / "deploy" / "acl.example"),
    }, conf=SECURE_CONF)
    broker.start()
    yield broker, ca.cert
    broker.stop()


def device_client(port: int, cafile, user: str, password: str, client_id: str) -> tuple[mqtt.Client, object]:
    """A connected MQTT 5 client (clean start, TLS); returns it and its CONNACK reason code."""
    box, done = {}, threading.Event()

    def on_connect(c, u, flags, reason, props):
        box["reason"] = reason
        done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(cafile))
    c.on_connect = on_connect
    c.connect("127.0.0.1", port, clean_start=True)
    c.loop_start()
    assert done.wait(10), "no CONNACK"
    return c, box["reason"]


def close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


@needs_tools
def test_the_zero_loss_limits_of_the_secure_configuration_are_those_of_the_default_one():
    def limits(path):
        keys = ("max_queued_messages", "max_queued_bytes", "max_inflight_messages", "max_packet_size", "persistence",
                "autosave_interval", "persistent_client_expiration")
        return {line.split()[0]: line.split()[1] for line in path.read_text().splitlines()
                if line.split(" ", 1)[0] in keys}

    assert limits(SECURE_CONF) == limits(REPO / "deploy" / "mosquitto.conf")


@needs_tools
def test_a_device_with_the_twins_client_id_does_not_take_over_its_session(secure):
    broker, cafile = secure
    device_port, service_port = broker.ports
    url = f"mqtts://{TWIN_USER}:{TWIN_PW}@127.0.0.1:{service_port}?cafile={cafile}"
    twin = MqttTransport(url, client_id=TWIN_ID, subscriptions=["city/sensors/+/+"])
    subscribed = subscribed_event(twin)
    assert twin.start(10), twin.stats.last_reason
    assert subscribed.wait(10)
    # a device logs in with its own account, the twin's client id and a clean start: the broker names the
    # connection after the account, so the twin is not kicked off and its session is not discarded
    device, reason = device_client(device_port, cafile, DEVICE, DEVICE_PW, TWIN_ID)
    assert not reason.is_failure, reason
    device.publish(f"city/sensors/crowd/{DEVICE}", READING, qos=1).wait_for_publish(10)
    wait_until(lambda: twin.queue.qsize() >= 1, 10, "the device's reading at the twin")
    twin.ack(twin.queue.get_nowait())
    # a device account cannot log in on the service listener at all
    intruder, refused = device_client(service_port, cafile, DEVICE, DEVICE_PW, TWIN_ID)
    close(intruder)
    assert refused.is_failure, "a device account logged in on the service listener"
    assert (twin.stats.disconnects, twin.stats.session_taken_over, twin.stats.session_lost) == (0, 0, 0)
    twin.stop()
    # while the twin is away: readings are queued in its session, and the device connects with the twin's
    # client id once more (a clean start would discard that session if the id were the twin's)
    for k in range(5):
        device.publish(f"city/sensors/crowd/{DEVICE}", b"[%d]" % k, qos=1).wait_for_publish(10)
    again_device, reason = device_client(device_port, cafile, DEVICE, DEVICE_PW, TWIN_ID)
    assert not reason.is_failure
    close(again_device)
    close(device)
    back = MqttTransport(url, client_id=TWIN_ID, subscriptions=["city/sensors/+/+"])
    assert back.start(10)
    try:
        wait_until(lambda: back.queue.qsize() >= 5, 10, "the 5 readings kept in the twin's session")
        assert back.session_present is True
        assert sorted(back.queue.get_nowait().payload for _ in range(5)) == [b"[%d]" % k for k in range(5)]
    finally:
        back.stop()
    broker.stop()  # its log is complete once it has stopped
    log = broker.log_path.read_text()
    assert f"as {DEVICE} " in log and f"Client {TWIN_ID} already connected" not in log


@pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")
def test_on_the_default_configuration_a_takeover_is_possible_and_raises_the_alarm(tmp_path, caplog):
    victim = f"twin-{uuid.uuid4().hex[:8]}"
    with PrivateBroker(tmp_path / "broker") as broker:
        twin = MqttTransport(broker.url, client_id=victim, subscriptions=["city/sensors/+/+"],
                             backoff=Backoff(0.2, 1.0))
        subscribed = subscribed_event(twin)
        assert twin.start(10) and subscribed.wait(10)
        caplog.set_level(logging.ERROR, logger="ingest.transport.client")
        # another client connects with the twin's client id and a clean start: the broker closes the twin's
        # connection and discards its session; the twin reconnects to find no session
        intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=victim, protocol=mqtt.MQTTv5)
        intruder.connect("127.0.0.1", broker.port, clean_start=True)
        intruder.loop_start()
        try:
            wait_until(lambda: twin.stats.session_lost >= 1, 20, lambda: f"the alarm: {twin.stats}")
        finally:
            intruder.loop_stop()
            twin.stop()
    assert f"Client {victim} already connected, closing old connection" in broker.log_path.read_text()
    alarms = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("ALARM" in m and victim in m and "no session" in m for m in alarms), alarms


class TakeoverBroker:
    """Just enough of an MQTT 5 broker: CONNACK to everyone, SUBACK to SUBSCRIBE, and to the first
    connection of ``client_id`` -- once it has subscribed -- a DISCONNECT with reason 0x8E."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id.encode()
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.sent = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _packet(conn: socket.socket) -> tuple[int, bytes] | None:
        head = conn.recv(1)
        if not head:
            return None
        n, mult = 0, 1
        while True:
            b = conn.recv(1)[0]
            n += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        body = b""
        while len(body) < n:
            chunk = conn.recv(n - len(body))
            if not chunk:
                return None
            body += chunk
        return head[0], body

    def _serve(self, conn: socket.socket) -> None:
        try:
            first = self._packet(conn)
            if first is None or first[0] != 0x10:
                return
            body = first[1]
            props_len = body[10]  # MQTT 5 CONNECT: name(6) level(1) flags(1) keepalive(2) props-length(1 byte here)
            at = 11 + props_len
            (idlen,) = struct.unpack_from(">H", body, at)
            cid = body[at + 2:at + 2 + idlen]
            conn.sendall(b"\x20\x03\x00\x00\x00")  # CONNACK: no session, success, no properties
            while (pkt := self._packet(conn)) is not None:
                kind, body = pkt
                if kind & 0xF0 == 0x80:  # SUBSCRIBE -> SUBACK granting QoS 1
                    conn.sendall(b"\x90\x04" + body[:2] + b"\x00\x01")
                    if cid == self.client_id and not self.sent.is_set():
                        self.sent.set()
                        conn.sendall(b"\xe0\x02\x8e\x00")  # DISCONNECT: Session taken over
                elif kind & 0xF0 == 0xC0:  # PINGREQ
                    conn.sendall(b"\xd0\x00")
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_disconnect_session_taken_over_counts_and_logs_the_alarm(caplog):
    broker = TakeoverBroker(TWIN_ID)
    caplog.set_level(logging.ERROR, logger="ingest.transport.client")
    twin = MqttTransport(f"mqtt://127.0.0.1:{broker.port}", client_id=TWIN_ID, subscriptions=["city/sensors/+/+"],
                         backoff=Backoff(0.2, 1.0))
    try:
        assert twin.start(10)
        wait_until(lambda: twin.stats.session_taken_over == 1, 10, lambda: f"the alarm: {twin.stats}")
        assert broker.sent.is_set()
        wait_until(lambda: twin.stats.connects >= 2, 10, "the twin connected again")
    finally:
        twin.stop()
        broker.close()
    alarms = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("ALARM: session taken over" in m and TWIN_ID in m for m in alarms), alarms
