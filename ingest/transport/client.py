"""``MqttTransport``: a wrapped paho 2.x client that moves bytes between the broker and a bounded queue.

* MQTT 5 by default (``protocol="3.1.1"`` for brokers that only speak 3.1.1, e.g. amqtt).
* Shared subscriptions (``share_group``): every topic filter is subscribed as ``$share/<group>/<filter>``, so
  the broker gives each message to one member of the group (MQTT 5 section 4.8.2; Mosquitto has them since
  1.6, for MQTT 5 and 3.1.1 clients; amqtt has none). The messages still arrive with their own topics. The
  city deployment's ingest workers use this to split the load (docs/guides/ingest-workers.md); without a
  group (the default, ``twin run``) nothing changes.
* Fixed client id and a persistent session: MQTT 5 ``clean_start=False`` with a Session Expiry Interval;
  MQTT 3.1.1 ``clean_session=False``. QoS 1 subscriptions are (re)made in ``on_connect``.
* Inbound flow control, without a wait cycle (docs/liveness.md):

  - acknowledgement is manual (``manual_ack=True``): ``ack(msg)`` sends the PUBACK once the consumer has
    made the message durable, and MQTT 5 Receive Maximum (``receive_maximum``) asks the broker to keep no
    more unacknowledged messages in flight than that (3.1.1: the broker's ``max_inflight_messages``);
  - ``on_message`` (paho's network thread) puts the message on the inbound queue. Only when the queue
    already holds ``queue_size`` messages -- a broker that does not hold Receive Maximum, such as
    Mosquitto 2.0.11 (which releases up to Receive Maximum more messages per PUBACK), an MQTT 3.1.1
    broker without a limit, or QoS 0 -- does it wait for room (TCP backpressure; nothing is dropped).
    That wait always ends: the consumer never waits on the network thread (``publish`` and ``ack`` only
    queue packets), and ``close_inbound()`` releases it at once;
  - after ``close_inbound()`` (the consumer is stopping) arriving messages are neither queued nor
    acknowledged: the broker keeps them and delivers them again to the next session (counted in
    ``stats.left_unacked``); the network thread reads them slowly (``CLOSED_READ_PAUSE_S`` each), so a
    flood that goes on leaves the CPU to the threads that are stopping.
* ``ack(msg)`` skips messages of an earlier connection: their packet ids are void and the broker
  redelivers them anyway.
* Outbound: a transport that subscribes publishes on a second connection of its own (client id
  ``client_id + "-out"``, clean start: it holds no session; paho keeps unconfirmed publishes in memory and
  sends them again after a reconnect). The broker's PUBACKs then never wait behind the inbound backlog
  on the subscriber's connection -- on Mosquitto 2.0.11 that backlog can be every message queued for the
  twin -- and the publisher's network thread never waits on anyone.
  ``publish`` at QoS 1 hands the message to paho and returns; confirmations (PUBACK) are
  tracked asynchronously (``is_confirmed(info)``, ``outstanding``, ``wait_published``). Unconfirmed
  publishes are bounded by ``max_outstanding`` (paho packet ids are 16-bit). A transport that subscribes
  (its network thread feeds a consumer) never waits in ``publish``: at the bound the publish is refused
  and counted (``stats.publish_refused``, logged). ``publish(..., droppable=True)`` (dead letters, the
  status document) is refused earlier, at ``droppable_budget``, and counted in ``stats.publish_dropped``,
  so that droppable traffic never crowds out the outbox. A transport that only publishes (a feed, a
  test) waits for room instead (``publish_waits``).
* Reconnect: paho's network thread (``loop_start``) with our jittered exponential backoff.
* Alarms: an MQTT 5 DISCONNECT with reason 0x8E "Session taken over" (another client connected with our
  client id) counts ``stats.session_taken_over``; a reconnect that finds no session on the broker (the
  queued messages are gone: session expired, a broker without persistence, or another client took the
  client id with a clean start -- Mosquitto 2.0 closes the old connection without a DISCONNECT) counts
  ``stats.session_lost``. Both log an error. A TLS certificate that does not verify counts
  ``stats.tls_failures`` and logs an error naming the CA file.

Threads: paho's network thread of the subscriber connection (``on_message``), that of the publisher
connection (PUBACKs), and the callers. docs/liveness.md lists who waits on whom.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import ssl
import sys
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
SESSION_TAKEN_OVER = 0x8E
"""MQTT 5 DISCONNECT reason code: another client connected with the same client id."""
CLOSED_READ_PAUSE_S = 0.002
"""After ``close_inbound``, the network thread pauses this long per message it leaves unacked [s]: it reads
at most 500 messages/s, so a flood that goes on does not take the CPU (and the GIL) from the threads that
are stopping; the broker keeps what is not read (TCP backpressure)."""
_NOT_SENT = (mqtt.MQTT_ERR_QUEUE_SIZE,)


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
    """Counters of the transport [1] (``queue_full_wait_s`` [s])."""

    connects: int = 0
    """Connections of the subscriber (the session); the publisher connection counts ``publisher_connects``."""
    disconnects: int = 0
    connect_failures: int = 0
    publisher_connects: int = 0
    publisher_disconnects: int = 0
    received: int = 0
    """Messages that arrived (``left_unacked`` and ``dropped_qos0`` of them were not queued)."""
    received_qos0: int = 0
    acked: int = 0
    acks_skipped_stale: int = 0
    published: int = 0
    """Publishes handed to paho."""
    confirmed: int = 0
    """QoS 1 publishes the broker confirmed (PUBACK)."""
    publish_failures: int = 0
    """paho refused a publish, or (a publish-only transport) a confirmation did not come in time."""
    publish_dropped: int = 0
    """``droppable`` publishes not sent: ``droppable_budget`` publishes were unconfirmed."""
    publish_refused: int = 0
    """Other publishes not sent on a transport that never waits: ``max_outstanding`` were unconfirmed."""
    queue_full_waits: int = 0
    """Times the network thread found the inbound queue full and waited for room."""
    queue_full_wait_s: float = 0.0
    queue_high_water: int = 0
    """Most messages seen on the inbound queue."""
    left_unacked: int = 0
    """QoS 1 messages that arrived after ``close_inbound``: not queued, not acked; the broker redelivers."""
    dropped_qos0: int = 0
    """QoS 0 messages that arrived after ``close_inbound`` (QoS 0 is at most once)."""
    session_taken_over: int = 0
    """MQTT 5 DISCONNECT 0x8E: another client connected with one of this transport's client ids."""
    session_lost: int = 0
    """Reconnects that found no session on the broker (its queued messages are gone)."""
    tls_failures: int = 0
    """Connection attempts whose TLS handshake failed (e.g. the broker's certificate does not verify)."""
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
    """Subscribe at QoS 1 with manual acks, publish at QoS 1 with asynchronous confirmation. Wraps a paho client.

    Parameters
    ----------
    url : str or BrokerURL
        ``mqtt[s]://[user[:password]@]host[:port][?cafile=PATH]``.
    client_id : str
        Fixed id: the broker keeps the session (subscriptions, unacked messages) under it. The publisher
        connection of a subscribing transport is ``client_id + "-out"`` (deploy/README.md: the twin
        connects to the service listener, where client ids are kept as given).
    subscriptions : sequence of str
        Topic filters subscribed at QoS 1 on every connect.
    share_group : str or None
        Subscribe to each filter as ``$share/<share_group>/<filter>`` (see the module docstring); a name without
        ``/``, ``+``, ``#`` or spaces. None: plain subscriptions.
    protocol : {"5", "3.1.1"}
    session_expiry_s : int
        MQTT 5 Session Expiry Interval [s] (ignored for 3.1.1, where the session never expires).
    receive_maximum : int
        MQTT 5 Receive Maximum: unacknowledged QoS 1 messages the broker may send at once [1].
    queue_size : int or None
        Bound of the inbound queue [message] (default ``4 * receive_maximum + 1000``). A broker that holds
        Receive Maximum never fills it; otherwise the network thread waits for room (see the module
        docstring).
    keepalive_s : int
    backoff : Backoff
    max_outstanding : int
        Unconfirmed QoS 1 publishes kept at most [1] (< 65535, paho's packet ids).
    droppable_budget : int or None
        Unconfirmed publishes above which a ``droppable`` publish is dropped and counted [1] (default
        ``max_outstanding // 2``).
    publish_waits : bool or None
        Whether ``publish`` waits (up to ``publish_timeout_s`` per message) for room at ``max_outstanding``.
        Default: only a transport without subscriptions waits; one that subscribes never does.
    publish_timeout_s : float
        See ``publish_waits`` [s].
    separate_publisher : bool or None
        Publish on a second connection (default: when there are subscriptions). False: one connection;
        then PUBACKs wait behind inbound traffic.
    tls_ca : str or None
        CA bundle for ``mqtts://`` (default: the URL's ``cafile``, else the system's CAs).
    clock : callable
        Receive times come from here [s].
    """

    def __init__(
        self,
        url: str | BrokerURL,
        *,
        client_id: str,
        subscriptions: Sequence[str] = (),
        share_group: str | None = None,
        protocol: str = "5",
        session_expiry_s: int = 7 * 86400,
        receive_maximum: int = 1000,
        queue_size: int | None = None,
        keepalive_s: int = 30,
        backoff: Backoff | None = None,
        max_outstanding: int = 10_000,
        droppable_budget: int | None = None,
        publish_waits: bool | None = None,
        publish_timeout_s: float = 10.0,
        separate_publisher: bool | None = None,
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
        self.share_group = share_group
        self.subscriptions = shared(subscriptions, share_group) if share_group is not None else tuple(subscriptions)
        """The topic filters as subscribed (``$share/...`` with a ``share_group``)."""
        self.protocol = protocol
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.keepalive_s = keepalive_s
        self.backoff = backoff or Backoff()
        self.max_outstanding = max_outstanding
        self.droppable_budget = min(max_outstanding, droppable_budget or max(1, max_outstanding // 2))
        self.publish_waits = (not self.subscriptions) if publish_waits is None else publish_waits
        self.publish_timeout_s = publish_timeout_s
        self.queue_size = queue_size or 4 * receive_maximum + 1000
        # A SimpleQueue has no bound of its own (it is C-implemented, cheaper per message than a Queue);
        # _on_message bounds it (see the module docstring). The application's control records
        # (pipeline.control_message, one per tick) are put without waiting.
        self.queue: queue.SimpleQueue[InboundMessage] = queue.SimpleQueue()
        self.stats = TransportStats()
        self.connected = threading.Event()
        self.session_present: bool | None = None
        """The broker's "session present" flag at the last connect of the subscriber (None before)."""
        self.cafile = tls_ca or self.url.cafile
        self._inbound_closed = threading.Event()
        self._tls_refused = threading.Event()
        self._generation = 0
        self._attempt = 0
        self._outstanding: deque[mqtt.MQTTMessageInfo] = deque()
        self._pub_lock = threading.Lock()
        self._client = self._make_client(self.client_id, clean=False)
        separate = bool(self.subscriptions) if separate_publisher is None else separate_publisher
        self.publisher_id = f"{self.client_id}-out" if separate else self.client_id
        self.publisher_connected = threading.Event() if separate else self.connected
        self._out = self._make_client(self.publisher_id, clean=True) if separate else self._client

    # -- set-up ------------------------------------------------------------------------------

    def _make_client(self, client_id: str, *, clean: bool) -> mqtt.Client:
        """The subscriber connection (``clean=False``: the persistent session) or the publisher connection."""
        v5 = self.protocol == "5"
        kwargs: dict[str, Any] = {} if v5 else {"clean_session": clean}
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=PROTOCOLS[self.protocol],
            manual_ack=True,
            **kwargs,
        )
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            self._set_tls(client)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        if clean:
            client.on_connect = self._on_publisher_connect
            client.on_disconnect = self._on_publisher_disconnect
        else:
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        client.reconnect_delay_set(self.backoff.delay(0), self.backoff.delay(0))
        return client

    def _set_tls(self, client: mqtt.Client) -> None:
        if self.cafile is not None and not os.path.isfile(self.cafile):
            raise ValueError(f"TLS: the CA file {self.cafile} does not exist (broker URL ?cafile=)")
        try:
            client.tls_set(ca_certs=self.cafile, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except ssl.SSLError as exc:
            raise ValueError(f"TLS: the CA file {self.cafile} holds no usable PEM certificate: {exc}") from exc

    def _connect_properties(self) -> Properties | None:
        if self.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        return props

    def _connect(self, client: mqtt.Client, *, clean: bool) -> None:
        extra: dict[str, Any] = {}
        if self.protocol == "5":
            extra = {"clean_start": True} if clean else {"clean_start": False, "properties": self._connect_properties()}
        client.connect_async(self.url.host, self.url.port, keepalive=self.keepalive_s, **extra)
        client.loop_start()

    def start(self, wait_s: float | None = 10.0) -> bool:
        """Connect in the background (retrying with backoff); optionally wait for the first CONNACK.

        Returns whether the client is connected (always True when ``wait_s`` is None). A broker certificate
        that does not verify ends the wait at once (False; ``stats.last_reason`` says why); the client
        keeps retrying in the background.
        """
        self._inbound_closed.clear()
        self._tls_refused.clear()
        self._connect(self._client, clean=False)
        if self._out is not self._client:
            self._connect(self._out, clean=True)
        if wait_s is None:
            return True
        deadline = time.monotonic() + wait_s
        for event in (self.connected, self.publisher_connected):
            while not event.wait(min(0.05, max(deadline - time.monotonic(), 0.0))):
                if self._tls_refused.is_set() or time.monotonic() >= deadline:
                    return False
        return True

    def leave(self) -> None:
        """Unsubscribe from every filter and forget them (a reconnect subscribes to nothing): the broker routes no
        new message here, while those already queued for this session still arrive. For an ingest worker that
        retires from its share group: it drains what is queued, then ``stop(end_session=True)``."""
        filters, self.subscriptions = self.subscriptions, ()
        if filters:
            self._client.unsubscribe(list(filters))
            log.info("unsubscribed from %s", ", ".join(filters))

    def close_inbound(self) -> None:
        """Stop taking messages in (the consumer is stopping): from now on arriving messages are neither
        queued nor acknowledged -- the broker delivers them again to the next session -- and a network
        thread waiting for room on the queue returns at once. ``start`` opens the inbound side again."""
        if not self._inbound_closed.is_set():
            self._inbound_closed.set()
            log.info("inbound closed; %d messages on the queue", self.queue.qsize())

    def stop(self, timeout_s: float = 5.0, end_session: bool = False) -> None:
        """Close the inbound side, wait briefly for pending publishes, disconnect, stop the network thread.

        ``end_session`` (MQTT 5) asks the broker to drop the persistent session now (Session Expiry
        Interval 0 on DISCONNECT), for short-lived clients such as a demo run."""
        self.close_inbound()
        if self.publisher_connected.is_set():
            self.wait_published(min(timeout_s, self.publish_timeout_s))
        props = None
        if end_session and self.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        if self._out is not self._client:
            self._out.disconnect()
            self._out.loop_stop()
        self._client.loop_stop()
        self.connected.clear()
        self.publisher_connected.clear()

    # -- callbacks (paho network thread: no slow work here) ------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.stats.connect_failures += 1
            self.stats.last_reason = str(reason)
            log.warning("broker %s refused the connection: %s", self.url, reason)
            self._set_next_delay()
            return
        session_present = bool(getattr(flags, "session_present", False))
        self.session_present = session_present
        if self._generation > 0 and not session_present:
            self.stats.session_lost += 1
            self.stats.last_reason = "session lost"
            log.error(
                "ALARM: the broker %s had no session for client id %s on reconnect: messages queued for it "
                "since the last connection are gone (session expired, a broker without persistence, or another "
                "client connected with this client id and a clean start; deploy/README.md, identity)",
                self.url, self.client_id,
            )
        self._generation += 1
        self._attempt = 0
        self.stats.connects += 1
        log.info("connected to %s as %s (session present: %s)", self.url, self.client_id, session_present)
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self.stats.disconnects += 1
        self.stats.last_reason = str(reason)
        self._check_taken_over(reason, self.client_id)
        self._set_next_delay()

    def _on_publisher_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.stats.connect_failures += 1
            self.stats.last_reason = str(reason)
            log.warning("broker %s refused the publisher connection: %s", self.url, reason)
            self._set_next_delay(client)
            return
        self.stats.publisher_connects += 1
        log.info("publisher connected to %s as %s", self.url, self.publisher_id)
        self.publisher_connected.set()

    def _on_publisher_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.publisher_connected.clear()
        self.stats.publisher_disconnects += 1
        self._check_taken_over(reason, self.publisher_id)
        self._set_next_delay(client)

    def _check_taken_over(self, reason: Any, client_id: str) -> None:
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            self.stats.session_taken_over += 1
            self.stats.last_reason = "session taken over"
            log.error(
                "ALARM: session taken over: another client connected to %s with this twin's client id %s "
                "(%d times so far); bind client ids to users (deploy/README.md, identity)",
                self.url, client_id, self.stats.session_taken_over,
            )
        else:
            log.info("%s disconnected from %s: %s", client_id, self.url, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` around the connection attempt: the cause is at hand
        self.stats.connect_failures += 1
        exc = sys.exc_info()[1]
        if exc is not None:
            self._connect_failed(exc)
        self._set_next_delay(client)

    def _connect_failed(self, exc: BaseException) -> None:
        where = f"{self.url.host}:{self.url.port}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            self.stats.tls_failures += 1
            ca = f"the CA file {self.cafile}" if self.cafile else "the system's CAs (no ?cafile= in the broker URL)"
            why = exc.verify_message or exc
            reason = f"TLS: the certificate of the broker {where} does not verify against {ca}: {why}"
            self._tls_refused.set()
            level = logging.ERROR
        elif isinstance(exc, ssl.SSLError):
            self.stats.tls_failures += 1
            reason = f"TLS: the handshake with {where} failed: {exc}"
            self._tls_refused.set()
            level = logging.ERROR
        else:
            reason = f"cannot connect to {where}: {exc}"
            level = logging.WARNING
        if reason != self.stats.last_reason:  # once per distinct cause, not once per retry
            log.log(level, "%s", reason)
        self.stats.last_reason = reason

    def _set_next_delay(self, client: mqtt.Client | None = None) -> None:
        d = self.backoff.delay(self._attempt)
        self._attempt += 1
        (client or self._client).reconnect_delay_set(d, d)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        stats = self.stats
        stats.received += 1
        if msg.qos == 0:
            stats.received_qos0 += 1
        if self._inbound_closed.is_set():
            self._not_queued(msg.qos)
            time.sleep(CLOSED_READ_PAUSE_S)
            return
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
        depth = self.queue.qsize()
        if depth >= self.queue_size and not self._wait_for_room():  # the broker outran the consumer
            self._not_queued(msg.qos)
            return
        self.queue.put(item)
        if depth >= stats.queue_high_water:
            stats.queue_high_water = depth + 1

    def _not_queued(self, qos: int) -> None:
        if qos == 0:
            self.stats.dropped_qos0 += 1
        else:
            self.stats.left_unacked += 1

    def _wait_for_room(self) -> bool:
        """Wait until the consumer has taken messages off the queue; False if the inbound side closed.

        The consumer never waits on this thread, so the wait ends once it has taken one group."""
        self.stats.queue_full_waits += 1
        if self.stats.queue_full_waits % 100 == 1:
            log.warning(
                "inbound queue full (%d): the broker sends faster than the consumer takes; the network thread "
                "waits for room (%d times so far)", self.queue_size, self.stats.queue_full_waits,
            )
        t0 = time.monotonic()
        delay = 0.0005
        try:
            while self.queue.qsize() >= self.queue_size:
                if self._inbound_closed.wait(delay):
                    return False
                delay = min(delay * 2, 0.005)
            return True
        finally:
            self.stats.queue_full_wait_s += time.monotonic() - t0

    # -- consumer side ------------------------------------------------------------------------

    def ack(self, msg: InboundMessage) -> None:
        """Acknowledge ``msg`` (QoS 1) if it came on the current connection (queues the PUBACK; never waits)."""
        if msg.qos == 0:
            return
        if msg.generation != self._generation:
            self.stats.acks_skipped_stale += 1
            return
        self._client.ack(msg.mid, msg.qos)
        self.stats.acked += 1

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, droppable: bool = False
    ) -> mqtt.MQTTMessageInfo:
        """Publish; QoS 1 messages are queued by paho while disconnected and sent on reconnect.

        Returns paho's ``MQTTMessageInfo`` (``is_confirmed(info)`` tells when the broker confirmed it). A
        publish that is not sent (see the module docstring) comes back with ``rc == MQTT_ERR_QUEUE_SIZE``
        and is counted; on a transport that subscribes this never waits.
        """
        with self._pub_lock:
            self._prune()
            if qos > 0:
                if droppable and len(self._outstanding) >= self.droppable_budget:
                    return self._not_sent(topic, dropped=True)
                if len(self._outstanding) >= self.max_outstanding:
                    if not self.publish_waits:
                        return self._not_sent(topic, dropped=False)
                    self._wait_for_outstanding_room()
            info = self._out.publish(topic, payload, qos=qos, retain=retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self.stats.publish_failures += 1
                log.error("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
                return info
            if qos > 0:
                self._outstanding.append(info)
            self.stats.published += 1
            return info

    def publish_droppable(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """``publish(..., droppable=True)``; True if the message was handed to paho (it will be confirmed,
        after a reconnect if need be), False if it was dropped and counted."""
        info = self.publish(topic, payload, qos=qos, retain=retain, droppable=True)
        return info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)

    def _not_sent(self, topic: str, *, dropped: bool) -> mqtt.MQTTMessageInfo:
        """Count (and now and then log) a publish that is not sent; an info that will never be confirmed."""
        if dropped:
            self.stats.publish_dropped += 1
            n, what, level = self.stats.publish_dropped, f"droppable budget {self.droppable_budget}", logging.WARNING
        else:
            self.stats.publish_refused += 1
            n, what, level = self.stats.publish_refused, f"max_outstanding {self.max_outstanding}", logging.ERROR
        if n == 1 or n % 1000 == 0:
            log.log(level, "publish to %s not sent: %d publishes await the broker's confirmation (%s); "
                    "%d not sent so far", topic, len(self._outstanding), what, n)
        info = mqtt.MQTTMessageInfo(0)
        info.rc = mqtt.MQTT_ERR_QUEUE_SIZE
        return info

    def _prune(self) -> None:
        """Forget confirmed publishes at the head of the outstanding list (paho sends and the broker confirms
        in order, so the head is the oldest)."""
        out = self._outstanding
        while out and _confirmed(out[0]):
            out.popleft()
            self.stats.confirmed += 1

    def _wait_for_outstanding_room(self) -> None:
        """(Publish-only transports.) Wait for the oldest unconfirmed publish, at most ``publish_timeout_s``."""
        while len(self._outstanding) >= self.max_outstanding:
            oldest = self._outstanding.popleft()
            if _wait_confirmed(oldest, self.publish_timeout_s):
                self.stats.confirmed += 1
            else:
                self.stats.publish_failures += 1
                log.error("publish mid %s not confirmed within %.1f s", oldest.mid, self.publish_timeout_s)

    def wait_published(self, timeout_s: float) -> bool:
        """Wait until every QoS 1 publish so far is confirmed; False on timeout. Not for the consumer thread
        of a subscribing transport (it must not wait on the network thread)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._pub_lock:
                self._prune()
                if not self._outstanding:
                    return True
                head = self._outstanding[0]
            left = deadline - time.monotonic()
            if left <= 0 or not _wait_confirmed(head, left):
                with self._pub_lock:
                    self._prune()
                    return not self._outstanding

    @property
    def outstanding(self) -> int:
        """Unconfirmed QoS 1 publishes [1] (never waits: while a publisher holds the lock, the count may
        include a few confirmed ones)."""
        if self._pub_lock.acquire(blocking=False):
            try:
                self._prune()
            finally:
                self._pub_lock.release()
        return len(self._outstanding)


def shared(filters: Sequence[str], group: str) -> tuple[str, ...]:
    """``$share/<group>/<filter>`` for each filter (MQTT 5 shared subscriptions); ValueError for a bad group name
    or a filter that is already shared."""
    if not group or any(c in group for c in "/+# ") or not group.isprintable():
        raise ValueError(f"a share group is a non-empty name without '/', '+', '#' or spaces, got {group!r}")
    already = [f for f in filters if f.startswith("$share/")]
    if already:
        raise ValueError(f"already shared subscriptions: {already}")
    return tuple(f"$share/{group}/{f}" for f in filters)


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
        if time.monotonic() >= deadline or info.rc in _NOT_SENT:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True
