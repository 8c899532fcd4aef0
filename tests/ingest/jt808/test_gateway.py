"""The JT/T 808 gateway end to end: asyncio terminals over loopback, a real Mosquitto (tests.support.mqtt).

Each test runs one scenario coroutine (``run``) with the gateway in the same event loop; waits are on frames,
MQTT messages and events, each with a timeout."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable

import paho.mqtt.client as mqtt
import pytest

from ingest.jt808 import messages as m
from ingest.jt808.bridge import MqttBridge
from ingest.jt808.framing import FrameSplitter
from ingest.jt808.gateway import Gateway, GatewayConfig, serve
from ingest.jt808.header import Message, build_frame, parse_frame
from ingest.jt808.location import Location, decode_batch_location, encode_batch_location, encode_location
from ingest.jt808.terminals import Terminals
from ingest.registry import Device, Registry
from tests.support.mqtt import PrivateBroker, mosquitto_available

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")

WAIT_S = 5.0
BUS, BUS_PHONE = "bus-1", "13912345678"
UNIT, UNIT_PHONE = "unit-7", "013800000007"
OLD, OLD_PHONE = "bus-old", "13700000000"


def registry() -> Registry:
    """A bus, a field unit (both with terminals), a retired bus, and a unit without a terminal."""
    bus = Device(BUS, "vehicle", ("position",), properties={"id": BUS, "jt808_phone": BUS_PHONE})
    unit = Device(UNIT, "unit", ("position",), unit_type="fire", properties={"id": UNIT, "jt808_phone": UNIT_PHONE})
    plain = Device("unit-9", "unit", ("position",), unit_type="police", properties={"id": "unit-9"})
    old = Device(OLD, "vehicle", ("position",), properties={"id": OLD, "jt808_phone": OLD_PHONE}, status="retired")
    return Registry({d.id: d for d in (bus, unit, plain)}, retired={OLD: old})


def location(k: int = 0) -> Location:
    return Location(
        status=0,
        lat=31.2397 + k * 1e-4,
        lon=121.4998,
        altitude_m=5,
        speed_kmh=32.5,
        direction_deg=90,
        time=1767190921.0 + k,
        fixed=True,
        gnss=frozenset({"BDS"}),
        mileage_km=1234.5,
        satellites=12,
        extra=((0xE1, b"\x7e\x7d"),),
    )


class Terminal:
    """An asyncio JT/T 808 terminal for the tests."""

    def __init__(self, phone: str, version: int = 2013) -> None:
        self.phone, self.version = phone, version
        self.serial = 0
        self.splitter = FrameSplitter()
        self.frames: list[bytes] = []

    async def connect(self, port: int, **kwargs) -> Terminal:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, **kwargs)
        return self

    def frame(
        self,
        msg_id: int,
        body: bytes = b"",
        *,
        packet: tuple[int, int] = (0, 0),
        serial: int | None = None,
        encrypted: bool = False,
    ) -> tuple[bytes, int]:
        serial = self.serial if serial is None else serial
        self.serial = (serial + 1) & 0xFFFF
        return build_frame(
            msg_id, self.phone, serial, body, version=self.version, packet=packet, encrypted=encrypted
        ), serial

    async def send(self, msg_id: int, body: bytes = b"", **kwargs) -> tuple[bytes, int]:
        wire, serial = self.frame(msg_id, body, **kwargs)
        await self.write(wire)
        return wire, serial

    async def write(self, wire: bytes) -> None:
        self.writer.write(wire)
        await self.writer.drain()

    async def recv(self, timeout_s: float = WAIT_S) -> Message:
        async def next_frame() -> Message:
            while not self.frames:
                chunk = await self.reader.read(4096)
                if not chunk:
                    raise ConnectionError("closed by the gateway")
                self.frames += self.splitter.feed(chunk)
            return parse_frame(self.frames.pop(0))

        return await asyncio.wait_for(next_frame(), timeout_s)

    async def reply(self, timeout_s: float = WAIT_S) -> m.GeneralReply:
        msg = await self.recv(timeout_s)
        assert msg.header.msg_id == m.PLATFORM_REPLY, hex(msg.header.msg_id)
        return m.decode_general_reply(msg.body)

    async def register(self) -> m.RegistrationReply:
        reg = m.Registration(31, 101, "CTWIN", "BUS-9", "T0001", 1, "沪A12345")
        await self.send(m.REGISTRATION, m.encode_registration(reg, self.version))
        msg = await self.recv()
        assert msg.header.msg_id == m.REGISTRATION_REPLY
        return m.decode_registration_reply(msg.body)

    async def login(self) -> None:
        answer = await self.register()
        assert answer.result == m.REG_OK
        await self.send(m.AUTHENTICATION, m.encode_authentication(m.Authentication(answer.auth_code), self.version))
        assert (await self.reply()).result == m.RESULT_OK

    async def closed(self, timeout_s: float = WAIT_S) -> bool:
        """Whether the gateway closes the connection within ``timeout_s`` (reads and drops what comes)."""

        async def until_eof() -> None:
            while await self.reader.read(4096):
                pass

        with contextlib.suppress(ConnectionError):  # a reset is a close too
            await asyncio.wait_for(until_eof(), timeout_s)
        return True

    def close(self) -> None:
        self.writer.transport.abort()


class Watcher:
    """An MQTT subscriber whose messages come out of an asyncio queue."""

    def __init__(self, url: str, topics: list[str], client_id: str | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.subscribed = threading.Event()
        persistent = client_id is not None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "", protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, msg: self.loop.call_soon_threadsafe(
            self.queue.put_nowait, (msg.topic, bytes(msg.payload))
        )
        host, port = url.rsplit("/", 1)[1].split(":")
        props = None
        if persistent:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
        self.client.connect(host, int(port), clean_start=not persistent, properties=props)
        self.client.loop_start()

    async def ready(self) -> Watcher:
        assert await asyncio.to_thread(self.subscribed.wait, WAIT_S), "no SUBACK"
        return self

    async def get(self, timeout_s: float = WAIT_S) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.queue.get(), timeout_s)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def started(url: str, reg: Registry | None = None, **config) -> Gateway:
    config.setdefault("port", 0)
    bridge = MqttBridge(
        url,
        client_id=f"gw-{time.monotonic_ns()}",
        confirm_timeout_s=config.pop("confirm_s", 20.0),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )
    gw = Gateway(GatewayConfig(**config), Terminals(reg or registry()), bridge)
    await gw.start()
    assert await asyncio.to_thread(bridge.subscribed.wait, WAIT_S), "the gateway did not subscribe"
    return gw


async def until(predicate: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``predicate`` on the event loop until it holds; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        await asyncio.sleep(0.01)  # the polling pace; the gateway runs meanwhile


def run(scenario: Callable[[], Awaitable[None]], timeout_s: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout_s))


def letter(payload: bytes) -> dict:
    doc = json.loads(payload)
    doc["payload"] = base64.b64decode(doc["payload_b64"])
    return doc


@pytest.fixture
def url(broker) -> str:
    return broker.url


# -- the happy path ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2013, 2019])
def test_register_authenticate_report_arrives_byte_for_byte(url, version):
    async def scenario():
        gw = await started(url)
        watch = await Watcher(url, ["city/beidou/#"]).ready()
        bus = await Terminal(BUS_PHONE if version == 2013 else BUS_PHONE.zfill(20), version).connect(gw.port)
        await bus.login()
        await bus.send(m.HEARTBEAT)
        assert (await bus.reply()).result == m.RESULT_OK
        wire, serial = await bus.send(m.LOCATION, encode_location(location()))
        assert await watch.get() == (f"city/beidou/{BUS}", wire)
        answer = await bus.reply()
        assert (answer.reply_serial, answer.reply_id, answer.result) == (serial, m.LOCATION, m.RESULT_OK)
        batch, serial = await bus.send(m.BATCH_LOCATION, encode_batch_location(0, [location(1), location(2)]))
        assert await watch.get() == (f"city/beidou/{BUS}", batch)
        assert (await bus.reply()).reply_serial == serial
        stats = gw.stats.as_dict()
        assert stats["published"] == 2 and stats["auth_ok"] == 1 and stats["registrations"] == 1
        assert stats["by_msg"]["0x0200"] == 1 and stats["mqtt"]["confirmed"] >= 2
        bus.close()
        watch.stop()
        await gw.stop()

    run(scenario)


def test_answer_only_after_puback_and_nothing_lost_over_a_broker_restart(tmp_path):
    broker = PrivateBroker(tmp_path / "own").start()

    async def scenario():
        gw = await started(broker.url)
        watch = await Watcher(broker.url, ["city/beidou/#"], client_id="watch-restart").ready()
        bus = await Terminal(BUS_PHONE).connect(gw.port)
        await bus.login()
        await asyncio.to_thread(broker.stop)
        wire, serial = await bus.send(m.LOCATION, encode_location(location()))
        with pytest.raises(TimeoutError):
            await bus.recv(timeout_s=1.0)  # no PUBACK, no answer
        await bus.send(m.HEARTBEAT)  # the link stays up meanwhile
        assert (await bus.reply()).result == m.RESULT_OK
        await asyncio.to_thread(broker.start)
        answer = await bus.reply(timeout_s=15.0)
        assert (answer.reply_serial, answer.reply_id, answer.result) == (serial, m.LOCATION, m.RESULT_OK)
        assert await watch.get(timeout_s=15.0) == (f"city/beidou/{BUS}", wire)
        bus.close()
        watch.stop()
        await gw.stop()

    try:
        run(scenario, timeout_s=40.0)
    finally:
        broker.stop()


def test_subpackaged_batch_is_reassembled_into_one_frame(url):
    async def scenario():
        gw = await started(url)
        watch = await Watcher(url, ["city/beidou/#"]).ready()
        bus = await Terminal(BUS_PHONE).connect(gw.port)
        await bus.login()
        body = encode_batch_location(1, [location(k) for k in range(6)])
        pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
        first = bus.serial
        for k in (2, 0, 1, *range(3, len(pieces))):  # out of order
            await bus.send(m.BATCH_LOCATION, pieces[k], packet=(len(pieces), k + 1), serial=first + k)
        topic, payload = await watch.get()
        assert topic == f"city/beidou/{BUS}"
        whole = parse_frame(payload[1:-1])
        assert (whole.header.msg_id, whole.header.packet_total, whole.body) == (m.BATCH_LOCATION, 0, body)
        assert decode_batch_location(whole.body) == decode_batch_location(body)
        answered = {(await bus.reply()).reply_serial for _ in pieces}
        assert answered == {first + k for k in range(len(pieces))}
        bus.close()
        watch.stop()
        await gw.stop()

    run(scenario)


# -- refusals ---------------------------------------------------------------------------------------------------


def test_unknown_and_retired_terminals_are_refused_with_result_4(url):
    async def scenario():
        gw = await started(url)
        dead = await Watcher(url, ["city/deadletter"]).ready()
        for phone, reason in (("13999999999", "unknown_device"), (OLD_PHONE, "retired_device")):
            t = await Terminal(phone).connect(gw.port)
            answer = await t.register()
            assert (answer.result, answer.auth_code) == (m.REG_NO_TERMINAL, "")
            doc = letter((await dead.get())[1])
            assert (doc["reason"], doc["topic"]) == (reason, f"city/beidou/jt808:{phone}")
            t.close()
        assert gw.stats.refused == {"unknown_device": 1, "retired_device": 1}
        dead.stop()
        await gw.stop()

    run(scenario)


def test_wrong_auth_code_and_unauthenticated_messages_get_result_1(url):
    async def scenario():
        gw = await started(url)
        dead = await Watcher(url, ["city/deadletter"]).ready()
        bus = await Terminal(BUS_PHONE).connect(gw.port)
        wire, serial = await bus.send(m.LOCATION, encode_location(location()))
        answer = await bus.reply()
        assert (answer.reply_serial, answer.result) == (serial, m.RESULT_FAILURE)
        doc = letter((await dead.get())[1])
        assert (doc["reason"], doc["detail"], doc["payload"]) == ("unknown_device", "not authenticated", wire)
        await bus.send(m.HEARTBEAT)
        assert (await bus.reply()).result == m.RESULT_FAILURE
        assert (await bus.register()).result == m.REG_OK
        await bus.send(m.AUTHENTICATION, m.encode_authentication(m.Authentication("0123456789ABCDEF")))
        assert (await bus.reply()).result == m.RESULT_FAILURE
        assert (gw.stats.auth_failed, gw.stats.unauthenticated, gw.stats.published) == (1, 2, 0)
        bus.close()
        dead.stop()
        await gw.stop()

    run(scenario)


def test_bad_frames_become_dead_letters_and_result_2_or_3(url):
    async def scenario():
        gw = await started(url)
        dead = await Watcher(url, ["city/deadletter"]).ready()
        bus = await Terminal(BUS_PHONE).connect(gw.port)
        await bus.login()
        wire, serial = bus.frame(m.LOCATION, encode_location(location()))
        spoiled = wire[:-2] + bytes((wire[-2] ^ 0x01 if wire[-2] not in (0x7C, 0x7F) else 0x00,)) + wire[-1:]
        await bus.write(spoiled)
        doc = letter((await dead.get())[1])
        assert (doc["reason"], doc["topic"], doc["payload"]) == ("bad_checksum", f"city/beidou/{BUS}", spoiled)
        answer = await bus.reply()
        assert (answer.reply_serial, answer.result) == (serial, m.RESULT_BAD_MESSAGE)
        await bus.send(m.LOCATION, b"\x00" * 10)  # a body too short for a location
        assert letter((await dead.get())[1])["reason"] == "bad_syntax"
        assert (await bus.reply()).result == m.RESULT_BAD_MESSAGE
        await bus.send(0x0F0F, b"?")
        assert (await bus.reply()).result == m.RESULT_UNSUPPORTED
        await bus.send(m.LOCATION, b"\x01" * 40, encrypted=True)
        assert (await bus.reply()).result == m.RESULT_UNSUPPORTED
        assert gw.stats.refused == {"bad_checksum": 1, "bad_syntax": 1} and gw.stats.unsupported == 2
        bus.close()
        dead.stop()
        await gw.stop()

    run(scenario)


def test_deregistration_revokes_the_code(url):
    async def scenario():
        gw = await started(url)
        bus = await Terminal(BUS_PHONE).connect(gw.port)
        code = (await bus.register()).auth_code
        await bus.send(m.AUTHENTICATION, m.encode_authentication(m.Authentication(code)))
        assert (await bus.reply()).result == m.RESULT_OK
        await bus.send(m.DEREGISTRATION)
        assert (await bus.reply()).result == m.RESULT_OK
        await bus.send(m.AUTHENTICATION, m.encode_authentication(m.Authentication(code)))
        assert (await bus.reply()).result == m.RESULT_FAILURE
        assert (await bus.register()).auth_code != code
        bus.close()
        await gw.stop()

    run(scenario)


# -- connections ------------------------------------------------------------------------------------------------


def test_idle_connections_are_closed(url):
    async def scenario():
        gw = await started(url, idle_timeout_s=0.3)
        t = await Terminal(BUS_PHONE).connect(gw.port)
        assert await t.closed()
        assert gw.stats.idle_closed == 1
        await gw.stop()

    run(scenario)


def test_connections_beyond_the_maximum_are_closed_at_once(url):
    async def scenario():
        gw = await started(url, max_connections=2)
        first = [await Terminal(BUS_PHONE).connect(gw.port) for _ in range(2)]
        extra = await Terminal(UNIT_PHONE).connect(gw.port)
        assert await extra.closed()
        assert gw.stats.connections_refused == 1 and gw.stats.open_connections == 2
        await first[0].send(m.HEARTBEAT)
        assert (await first[0].reply()).result == m.RESULT_FAILURE  # the others are served
        for t in first:
            t.close()
        await gw.stop()

    run(scenario)


def test_listening_beyond_loopback_needs_an_allow_list(url):
    with pytest.raises(ValueError, match="allow"):
        GatewayConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="CIDR"):
        GatewayConfig(host="0.0.0.0", allow=("10.0.0.0/99",))
    config = GatewayConfig(host="0.0.0.0", allow=("10.20.0.0/16",))
    assert config.allows("10.20.3.4") and config.allows("::ffff:10.20.3.4") and not config.allows("10.21.0.1")

    async def scenario():
        gw = await started(url, allow=("10.20.0.0/16",))
        t = await Terminal(BUS_PHONE).connect(gw.port)
        assert await t.closed()
        assert gw.stats.peers_refused == 1 and gw.stats.connections == 0
        await gw.stop()

    run(scenario)


def test_a_client_that_does_not_read_does_not_stall_the_others(url):
    async def scenario():
        gw = await started(url, write_queue=4, write_buffer_bytes=1024)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", gw.port))
        sock.setblocking(False)
        hostile = Terminal("13600000000")
        hostile.reader, hostile.writer = await asyncio.open_connection(sock=sock, limit=1024)
        flood = b"".join(hostile.frame(m.HEARTBEAT)[0] for _ in range(2000))
        good = await Terminal(BUS_PHONE).connect(gw.port)
        await good.login()
        while gw.stats.slow_closed == 0:
            with contextlib.suppress(TimeoutError, ConnectionError):  # it never reads its answers
                await asyncio.wait_for(hostile.write(flood), 0.5)
            await good.send(m.HEARTBEAT)
            assert (await good.reply(timeout_s=2.0)).result == m.RESULT_OK
        assert gw.stats.slow_closed == 1 and good.writer.transport.is_closing() is False
        hostile.close()
        good.close()
        await gw.stop()

    run(scenario)


# -- hosting ----------------------------------------------------------------------------------------------------


def test_run_in_thread_and_serve(url):
    bridge = MqttBridge(url, client_id="gw-thread")
    gw = Gateway(GatewayConfig(port=0), Terminals(registry()), bridge)
    port = gw.run_in_thread()

    async def heartbeat(port: int) -> int:
        t = await Terminal(BUS_PHONE).connect(port)
        await t.send(m.HEARTBEAT)
        result = (await t.reply()).result
        t.close()
        return result

    assert asyncio.run(heartbeat(port)) == m.RESULT_FAILURE
    assert gw.stop_thread(10.0)

    stop, lines, ready = threading.Event(), [], threading.Event()

    def progress(text: str) -> None:
        lines.append(text)
        ready.set()

    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(serve(GatewayConfig(port=0), registry(), url, stop=stop, progress=progress))
    )
    thread.start()
    assert ready.wait(WAIT_S) and "listening" in lines[0]
    stop.set()
    thread.join(WAIT_S)
    assert codes == [0] and "stopped" in lines[-1]
    assert serve(GatewayConfig(port=0), registry(), "http://nowhere", progress=lines.append) == 2
