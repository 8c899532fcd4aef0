"""MQTT from asyncio: QoS 1 publishes whose coroutine resumes on the broker's PUBACK, and subscriptions.

``MqttBridge`` wraps one paho 2.x client (MQTT 5 with a clean start, or 3.1.1 with a clean session for brokers
that speak only that, such as the embedded one of ``twin run``) whose network thread runs beside the event loop
(``loop_start``). ``await bridge.publish(topic, payload)`` hands the message to paho and waits for its PUBACK:
paho's ``on_publish`` (network thread) resumes the coroutine with ``loop.call_soon_threadsafe``. The event loop
never waits on the network thread.

While the broker is away paho keeps unconfirmed messages in memory and sends them again after the reconnect
(MQTT 5 section 4.4). Unconfirmed publishes are bounded (``max_inflight``): at the bound a publish is refused
at once (False, counted); a publish whose PUBACK does not come within ``confirm_timeout_s`` returns False too
(counted; the message stays with paho until confirmed and keeps its place in the bound). The gateway then
leaves the terminal's report unanswered, and the terminal sends it again (JT/T 808-2013 section 5.5,
at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import paho.mqtt.client as mqtt

from ingest.transport.url import BrokerURL, parse_broker_url

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes], None]
PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
"""The MQTT versions the bridge speaks, by their ``--protocol`` names."""
_MISSING = object()


@dataclass
class BridgeStats:
    """Counters of the bridge [1]."""

    published: int = 0
    """Publishes handed to paho."""
    confirmed: int = 0
    """PUBACKs with a success reason code."""
    failed: int = 0
    """Publishes paho refused, or PUBACKs with an error reason code."""
    refused: int = 0
    """Publishes not sent: ``max_inflight`` were unconfirmed."""
    dropped: int = 0
    """Droppable publishes (dead letters) not sent: half of ``max_inflight`` were unconfirmed."""
    timeouts: int = 0
    """Publishes whose PUBACK did not come within ``confirm_timeout_s``."""
    received: int = 0
    """Messages received on the subscriptions."""
    received_dropped: int = 0
    """Messages received while ``max_received`` awaited the event loop (left out)."""
    connects: int = 0
    disconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class MqttBridge:
    """QoS 1 publishing and subscribing for an asyncio program (see the module docstring).

    Parameters
    ----------
    url : str or BrokerURL
        ``mqtt[s]://[user[:password]@]host[:port][?cafile=PATH]`` (``ingest.transport.url``).
    client_id : str
    max_inflight : int
        Unconfirmed publishes kept at most [1] (< 65535: paho's packet ids).
    confirm_timeout_s : float
        How long ``publish`` waits for the PUBACK [s].
    reconnect_min_s, reconnect_max_s : float
        paho's reconnect delay bounds [s].
    max_received : int
        Received messages waiting for the event loop at most [1].
    protocol : str
        ``"5"`` (default) or ``"3.1.1"``.
    """

    def __init__(self, url: str | BrokerURL, *, client_id: str = "citytwin-jt808", max_inflight: int = 10_000,
                 confirm_timeout_s: float = 30.0, reconnect_min_s: float = 0.2, reconnect_max_s: float = 10.0,
                 keepalive_s: int = 30, max_received: int = 1000, protocol: str = "5") -> None:
        if not 0 < max_inflight < 65535:
            raise ValueError("max_inflight must be in 1..65534")
        if protocol not in PROTOCOLS:
            raise ValueError(f"MQTT protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        self.protocol = PROTOCOLS[protocol]
        self.url = url if isinstance(url, BrokerURL) else parse_broker_url(url)
        self.client_id = client_id
        self.max_inflight = max_inflight
        self.confirm_timeout_s = confirm_timeout_s
        self.keepalive_s = keepalive_s
        self.max_received = max_received
        self.stats = BridgeStats()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        """Set when the broker acknowledged the subscriptions (cleared on disconnect)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: tuple[str, ...] = ()
        self._on_message: OnMessage | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future | None] = {}
        self._early: dict[int, bool] = {}
        self._waiting_loop = 0
        self._client = self._make_client(reconnect_min_s, reconnect_max_s)

    def _make_client(self, reconnect_min_s: float, reconnect_max_s: float) -> mqtt.Client:
        v5 = self.protocol == mqtt.MQTTv5
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol,
                             **({} if v5 else {"clean_session": True}))
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            client.tls_set(ca_certs=self.url.cafile)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message_thread
        client.on_subscribe = lambda *args: self.subscribed.set()
        return client

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, subscriptions: Sequence[str] = (),
              on_message: OnMessage | None = None) -> None:
        """Connect in the background (paho retries until the broker is there); ``on_message(topic, payload)`` is
        called on ``loop`` for each message of ``subscriptions`` (QoS 1, made again on every connect)."""
        self._loop, self._subscriptions, self._on_message = loop, tuple(subscriptions), on_message
        clean = {"clean_start": True} if self.protocol == mqtt.MQTTv5 else {}
        self._client.connect_async(self.url.host, self.url.port, keepalive=self.keepalive_s, **clean)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread (unconfirmed publishes are given up: their terminals resend)."""
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if fut is not None and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(_settle, fut, False)

    @property
    def inflight(self) -> int:
        """Publishes handed to paho and not yet confirmed [1]."""
        return len(self._pending)

    # -- publishing (event loop) ----------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1 and wait for the PUBACK; True when the broker confirmed it, False when refused
        (``max_inflight`` unconfirmed), failed, or not confirmed within ``confirm_timeout_s``."""
        if len(self._pending) >= self.max_inflight:
            self.stats.refused += 1
            return False
        assert self._loop is not None, "start() first"
        fut = self._loop.create_future()
        if not self._send(topic, payload, fut):
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.confirm_timeout_s)
        except TimeoutError:
            self.stats.timeouts += 1
            return False

    def publish_droppable(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1 without waiting (dead letters); False (counted in ``dropped``) when half of
        ``max_inflight`` publishes are unconfirmed."""
        if len(self._pending) >= self.max_inflight // 2:
            self.stats.dropped += 1
            return False
        return self._send(topic, payload, None)

    def _send(self, topic: str, payload: bytes, fut: asyncio.Future | None) -> bool:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.stats.failed += 1
            log.error("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return False
        self.stats.published += 1
        with self._lock:  # paho may have seen the PUBACK before publish() returned the mid
            ok = self._early.pop(info.mid, _MISSING)
            if ok is _MISSING:
                self._pending[info.mid] = fut
        if ok is not _MISSING and fut is not None:
            fut.set_result(ok)
        return True

    # -- paho callbacks (network thread: no slow work, never wait on the event loop) -----------------

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        ok = not getattr(reason, "is_failure", False)
        if ok:
            self.stats.confirmed += 1
        else:
            self.stats.failed += 1
        with self._lock:
            fut = self._pending.pop(mid, _MISSING)
            if fut is _MISSING:
                self._early[mid] = ok
                return
        if fut is not None:
            self._call_soon(_settle, fut, ok)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the gateway's connection: %s", self.url, reason)
            return
        self.stats.connects += 1
        log.info("gateway connected to %s as %s", self.url, self.client_id)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.stats.disconnects += 1
        log.info("gateway disconnected from %s: %s", self.url, reason)

    def _on_message_thread(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        if self._on_message is None:
            return
        with self._lock:
            full = self._waiting_loop >= self.max_received
            if not full:
                self._waiting_loop += 1
        if full:
            self.stats.received_dropped += 1
            return
        self._call_soon(self._deliver, msg.topic, bytes(msg.payload))

    def _deliver(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self._waiting_loop -= 1
        if self._on_message is not None:
            self._on_message(topic, payload)

    def _call_soon(self, func: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(func, *args)


def _settle(fut: asyncio.Future, ok: bool) -> None:
    if not fut.done():
        fut.set_result(ok)
