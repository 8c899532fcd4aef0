"""``MqttTransport``: a wrapped paho 2.x client that moves bytes between the broker and a bounded queue.

* MQTT 5 by default (``protocol="3.1.1"`` for brokers that only speak 3.1.1, e.g. amqtt).
* Fixed client id and a persistent session: MQTT 5 ``clean_start=False`` with a Session Expiry Interval;
  MQTT 3.1.1 ``clean_session=False``. QoS 1 subscriptions are (re)made in ``on_connect``.
* ``on_message`` only puts an ``InboundMessage`` on the inbound queue, and first waits while the queue
  holds ``queue_size`` messages (TCP backpressure; nothing is dropped). In-flight messages are bounded by
  the protocol: MQTT 5 Receive Maximum (3.1.1: the broker's ``max_inflight_messages``), and since
  acknowledgement is manual (``manual_ack=True``) the broker sends no more than that until we ``ack``.
* ``ack(msg)`` sends the PUBACK; call it only once the message is durable. Acks for messages of an
  earlier connection are skipped: their packet ids are void and the broker redelivers them anyway.
* Reconnect: paho's network thread (``loop_start``) with our jittered exponential backoff.
* ``publish`` at QoS 1 keeps the number of unconfirmed messages below ``max_outstanding`` (paho packet
  ids are 16-bit); ``wait_published`` waits for confirmation.
"""

from __future__ import annotations

import logging
import queue
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.transport.url import BrokerURL, parse_broker_url

log = logging.getLogger(__name__)

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


class InboundMessage(NamedTuple):
    """A received message, as handed to the consumer."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    dup: bool
    retain: bool
    received_at: float
    """Receive time [s since epoch]."""
    generation: int
    """Connection number the message came on (acks are only valid on the same connection)."""


@dataclass
class TransportStats:
    """Counters of the transport [1]."""

    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    received: int = 0
    received_qos0: int = 0
    acked: int = 0
    acks_skipped_stale: int = 0
    published: int = 0
    publish_failures: int = 0
    queue_full_waits: int = 0
    last_reason: str = field(default="")


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential reconnect delay: ``d = min(max_s, min_s * 2**n)``, wait ``uniform(d/2, d)`` [s]."""

    min_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (0-based) [s]."""
        d = min(self.max_s, self.min_s * 2.0 ** min(attempt, 30))
        return random.uniform(d / 2.0, d)


class MqttTransport:
    """Subscribe at QoS 1 with manual acks, publish at QoS 1 with confirmation. Wraps a paho client.

    Parameters
    ----------
    url : str or BrokerURL
        ``mqtt[s]://[user[:password]@]host[:port]``.
    client_id : str
        Fixed id: the broker keeps the session (subscriptions, unacked messages) under it.
    subscriptions : sequence of str
        Topic filters subscribed at QoS 1 on every connect.
    protocol : {"5", "3.1.1"}
    session_expiry_s : int
        MQTT 5 Session Expiry Interval [s] (ignored for 3.1.1, where the session never expires).
    receive_maximum : int
        MQTT 5 Receive Maximum: unacknowledged QoS 1 messages the broker may send at once [1].
    queue_size : int or None
        Bound of the inbound queue (default ``4 * receive_maximum + 1000``). Mosquitto 2.0.11 does not
        hold Receive Maximum strictly once acks flow, so the queue can fill; the network thread then waits
        (TCP backpressure), nothing is dropped.
    keepalive_s : int
    backoff : Backoff
    max_outstanding : int
        Unconfirmed QoS 1 publishes kept before ``publish`` waits for the oldest [1] (< 65535).
    tls_ca : str or None
        CA bundle for ``mqtts://`` (system default if None).
    """

    def __init__(
        self,
        url: str | BrokerURL,
        *,
        client_id: str,
        subscriptions: Sequence[str] = (),
        protocol: str = "5",
        session_expiry_s: int = 7 * 86400,
        receive_maximum: int = 1000,
        queue_size: int | None = None,
        keepalive_s: int = 30,
        backoff: Backoff | None = None,
        max_outstanding: int = 10_000,
        publish_timeout_s: float = 10.0,
        tls_ca: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
        if not 0 < max_outstanding < 65535:
            raise ValueError("max_outstanding must be in 1..65534")
        self.url = url if isinstance(url, BrokerURL) else parse_broker_url(url)
        self.clock = clock
        """Receive times come from here [s]: wall time, or a simulated clock that runs faster."""
        self.client_id = client_id
        self.subscriptions = tuple(subscriptions)
        self.protocol = protocol
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.backoff = backoff or Backoff()
        self.max_outstanding = max_outstanding
        self.publish_timeout_s = publish_timeout_s
        self.queue_size = queue_size or 4 * receive_maximum + 1000
        # A SimpleQueue has no bound of its own (it is C-implemented, cheaper per message than a Queue);
        # _on_message bounds it: it waits while the queue holds queue_size messages. The application's
        # control records (pipeline.control_message, one per tick) are put without waiting.
        self.queue: queue.SimpleQueue[InboundMessage] = queue.SimpleQueue()
        self.stats = TransportStats()
        self.connected = threading.Event()
        self._generation = 0
        self._attempt = 0
        self._outstanding: deque[mqtt.MQTTMessageInfo] = deque()
        self._pub_lock = threading.Lock()
        self._client = self._make_client(tls_ca)

    # -- set-up ------------------------------------------------------------------------------

    def _make_client(self, tls_ca: str | None) -> mqtt.Client:
        v5 = self.protocol == "5"
        kwargs: dict[str, Any] = {} if v5 else {"clean_session": False}
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=PROTOCOLS[self.protocol],
            manual_ack=True,
            **kwargs,
        )
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            client.tls_set(ca_certs=tls_ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.reconnect_delay_set(self.backoff.delay(0), self.backoff.delay(0))
        return client

    def _connect_properties(self) -> Properties | None:
        if self.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        return props

    def start(self, wait_s: float | None = 10.0) -> bool:
        """Connect in the background (retrying with backoff); optionally wait for the first CONNACK.

        Returns whether the client is connected (always True when ``wait_s`` is None).
        """
        extra = (
            {"clean_start": False, "properties": self._connect_properties()} if self.protocol == "5" else {}
        )
        self._client.connect_async(self.url.host, self.url.port, keepalive=self.keepalive_s, **extra)
        self._client.loop_start()
        if wait_s is None:
            return True
        return self.connected.wait(wait_s)

    def stop(self, timeout_s: float = 5.0, end_session: bool = False) -> None:
        """Wait briefly for pending publishes, disconnect and stop the network thread.

        ``end_session`` (MQTT 5) asks the broker to drop the persistent session now (Session Expiry
        Interval 0 on DISCONNECT), for short-lived clients such as a demo run."""
        if self.connected.is_set():
            self.wait_published(min(timeout_s, self.publish_timeout_s))
        props = None
        if end_session and self.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()
        self.connected.clear()

    # -- callbacks (paho network thread: no slow work here) ------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.stats.connect_failures += 1
            self.stats.last_reason = str(reason)
            log.warning("broker %s refused the connection: %s", self.url, reason)
            self._set_next_delay()
            return
        self._generation += 1
        self._attempt = 0
        self.stats.connects += 1
        log.info(
            "connected to %s as %s (session present: %s)",
            self.url,
            self.client_id,
            getattr(flags, "session_present", None),
        )
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self.stats.disconnects += 1
        self.stats.last_reason = str(reason)
        log.info("disconnected from %s: %s", self.url, reason)
        self._set_next_delay()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.stats.connect_failures += 1
        self._set_next_delay()

    def _set_next_delay(self) -> None:
        d = self.backoff.delay(self._attempt)
        self._attempt += 1
        self._client.reconnect_delay_set(d, d)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = InboundMessage(
            msg.topic,
            bytes(msg.payload),
            msg.qos,
            msg.mid,
            bool(msg.dup),
            bool(msg.retain),
            self.clock(),
            self._generation,
        )
        self.stats.received += 1
        if msg.qos == 0:
            self.stats.received_qos0 += 1
        if self.queue.qsize() >= self.queue_size:  # the consumer is behind: wait (TCP backpressure)
            self._wait_for_room()
        self.queue.put(item)

    def _wait_for_room(self) -> None:
        self.stats.queue_full_waits += 1
        if self.stats.queue_full_waits % 100 == 1:
            log.warning(
                "inbound queue full (%d); the network thread waits (%d times so far)",
                self.queue_size,
                self.stats.queue_full_waits,
            )
        while self.queue.qsize() >= self.queue_size:
            time.sleep(0.001)

    # -- consumer side ------------------------------------------------------------------------

    def ack(self, msg: InboundMessage) -> None:
        """Acknowledge ``msg`` (QoS 1) if it came on the current connection."""
        if msg.qos == 0:
            return
        if msg.generation != self._generation:
            self.stats.acks_skipped_stale += 1
            return
        self._client.ack(msg.mid, msg.qos)
        self.stats.acked += 1

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        """Publish; QoS 1 messages are queued by paho while disconnected and sent on reconnect."""
        with self._pub_lock:
            self._bound_outstanding()
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self.stats.publish_failures += 1
                log.error("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            elif qos > 0:
                self._outstanding.append(info)
            self.stats.published += 1
            return info

    def _bound_outstanding(self) -> None:
        while self._outstanding and _confirmed(self._outstanding[0]):
            self._outstanding.popleft()
        while len(self._outstanding) >= self.max_outstanding:
            oldest = self._outstanding.popleft()
            if not _wait_confirmed(oldest, self.publish_timeout_s):
                self.stats.publish_failures += 1
                log.error("publish mid %s not confirmed within %.1f s", oldest.mid, self.publish_timeout_s)

    def wait_published(self, timeout_s: float) -> bool:
        """Wait until every QoS 1 publish so far is confirmed; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._pub_lock:
            while self._outstanding:
                if not _wait_confirmed(self._outstanding[0], deadline - time.monotonic()):
                    return False
                self._outstanding.popleft()
        return True

    @property
    def outstanding(self) -> int:
        """Unconfirmed QoS 1 publishes [1]."""
        return len(self._outstanding)


def is_confirmed(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker confirmed a QoS 1 publish (see `_confirmed`)."""
    return _confirmed(info)


def _confirmed(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker confirmed a QoS 1 publish.

    paho's ``is_published``/``wait_for_publish`` raise for a message published while disconnected
    (``rc=MQTT_ERR_NO_CONN``) even after paho resent it on reconnect and got the PUBACK, so the
    confirmation flag is read directly.
    """
    return bool(getattr(info, "_published", False))


def _wait_confirmed(info: mqtt.MQTTMessageInfo, timeout_s: float) -> bool:
    """Poll ``_confirmed`` until ``timeout_s`` [s] has passed."""
    deadline = time.monotonic() + max(timeout_s, 0.0)
    delay = 0.0005
    while not _confirmed(info):
        if time.monotonic() >= deadline or info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True
