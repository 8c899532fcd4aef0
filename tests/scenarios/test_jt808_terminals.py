"""The simulated JT/T 808 terminal (scenarios.feeds.jt808) against a tiny fake platform written here: registration and
authentication, retransmission on timeout (T, then T x (n + 1)), reconnection with the kept code, text 0x8300
answered with 0x0001, heartbeats, bounded backlog; and a small `TerminalFleet`."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections import Counter

import pytest

from ingest.jt808.framing import FrameSplitter
from ingest.jt808.header import Message, build_frame, parse_frame
from ingest.jt808.location import Location, decode_location
from ingest.jt808.messages import (
    AUTHENTICATION,
    HEARTBEAT,
    LOCATION,
    PLATFORM_REPLY,
    REGISTRATION,
    REGISTRATION_REPLY,
    TERMINAL_REPLY,
    TEXT,
    GeneralReply,
    RegistrationReply,
    TextMessage,
    decode_authentication,
    decode_general_reply,
    decode_registration,
    encode_general_reply,
    encode_registration_reply,
    encode_text,
)
from scenarios.feeds.jt808 import Terminal, TerminalSettings, retransmission_waits
from scenarios.feeds.jt808_fleet import TerminalFleet, location_of, synthetic_members

WAIT_S = 5.0
FAST = TerminalSettings(reply_timeout_s=0.05, retries=2, backoff_min_s=0.01, backoff_max_s=0.05,
                        connect_timeout_s=2.0)
T0 = 1767189600.0  # 2025-12-31 22:00 +08:00


class FakePlatform:
    """A JT/T 808 platform in a few lines: registers every terminal with code ``CODE``, checks the code, answers
    location reports unless told to ignore some, and records every message it got."""

    CODE = "FAKE-CODE-1"

    def __init__(self, *, ignore_locations: int = 0, refuse_registration: int = 0) -> None:
        self.ignore_locations, self.refuse_registration = ignore_locations, refuse_registration
        self.valid_codes = {self.CODE}
        self.messages: list[Message] = []
        self.by_id: Counter[int] = Counter()
        self.writers: list[asyncio.StreamWriter] = []
        self.changed = asyncio.Condition()
        self.server: asyncio.AbstractServer | None = None
        self.serial = 0

    async def __aenter__(self) -> FakePlatform:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self.writers:
            w.close()
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def wait_for(self, predicate, timeout_s: float = WAIT_S) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout_s)

    def send(self, writer: asyncio.StreamWriter, msg_id: int, phone: str, body: bytes, version: int = 2013) -> int:
        self.serial += 1
        writer.write(build_frame(msg_id, phone, self.serial, body, version=version))
        return self.serial

    def drop_all(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        splitter = FrameSplitter()
        with contextlib.suppress(OSError):
            while chunk := await reader.read(4096):
                for escaped in splitter.feed(chunk):
                    self._answer(parse_frame(escaped), writer)
                    async with self.changed:
                        self.changed.notify_all()

    def _answer(self, msg: Message, writer: asyncio.StreamWriter) -> None:
        h = msg.header
        self.messages.append(msg)
        self.by_id[h.msg_id] += 1
        if h.msg_id == REGISTRATION:
            decode_registration(msg.body, h)
            refuse = self.refuse_registration > 0
            self.refuse_registration -= 1
            reply = RegistrationReply(h.serial, 4, "") if refuse else RegistrationReply(h.serial, 0, self.CODE)
            self.send(writer, REGISTRATION_REPLY, h.phone, encode_registration_reply(reply), h.version)
            return
        if h.msg_id == LOCATION and self.ignore_locations > 0:
            self.ignore_locations -= 1
            return
        if h.msg_id == TERMINAL_REPLY:
            return
        result = 0
        if h.msg_id == AUTHENTICATION:
            result = 0 if decode_authentication(msg.body, h).auth_code in self.valid_codes else 1
        reply = GeneralReply(h.serial, h.msg_id, result)
        self.send(writer, PLATFORM_REPLY, h.phone, encode_general_reply(reply), h.version)

    def of(self, msg_id: int) -> list[Message]:
        return [m for m in self.messages if m.header.msg_id == msg_id]


def location(t: float = T0, lon: float = 121.49, lat: float = 31.24) -> Location:
    return location_of((lon, lat, 36.5, 90.0), t)


async def run_terminal(terminal: Terminal, body) -> None:
    """Run ``terminal`` while ``body()`` runs, then stop it."""
    task = asyncio.create_task(terminal.run())
    try:
        await asyncio.wait_for(body(), WAIT_S * 2)
    finally:
        terminal.stop()
        await asyncio.wait_for(task, WAIT_S)


def test_retransmission_waits_follow_the_standard():
    """T, then T_{n+1} = T_n x (n + 1): 1, 2, 6, 24 s for T = 1 s and N = 3."""
    assert retransmission_waits(1.0, 3) == [1.0, 2.0, 6.0, 24.0]
    assert retransmission_waits(0.5, 0) == [0.5]


@pytest.mark.parametrize("version", [2013, 2019])
def test_registers_authenticates_and_reports(version):
    async def main():
        async with FakePlatform() as platform:
            settings = TerminalSettings(**{**FAST.__dict__, "version": version})
            terminal = Terminal("13912345678", "127.0.0.1", platform.port, settings=settings)

            async def body():
                await asyncio.wait_for(terminal.authenticated.wait(), WAIT_S)
                terminal.offer(location())
                await platform.wait_for(lambda: platform.by_id[LOCATION] == 1)
                await asyncio.wait_for(terminal.idle.wait(), WAIT_S)

            await run_terminal(terminal, body)
            reg = platform.of(REGISTRATION)[0]
            assert reg.header.version == version
            assert reg.header.terminal == "13912345678"
            assert decode_registration(reg.body, reg.header).layout == version
            auth = platform.of(AUTHENTICATION)[0]
            assert decode_authentication(auth.body, auth.header).auth_code == FakePlatform.CODE
            loc = decode_location(platform.of(LOCATION)[0].body)
            assert (loc.time, loc.fixed, loc.speed_kmh, loc.direction_deg) == (T0, True, 36.5, 90)
            assert math.isclose(loc.lon, 121.49, abs_tol=1e-6) and math.isclose(loc.lat, 31.24, abs_tol=1e-6)
            assert terminal.auth_code == FakePlatform.CODE
            c = terminal.counters
            assert (c.sent, c.answered, c.resent, c.registrations, c.connections) == (1, 1, 0, 1, 1)

    asyncio.run(main())


def test_resends_the_same_frame_until_answered():
    """The platform ignores the first two copies: the terminal sends the same serial three times."""

    async def main():
        async with FakePlatform(ignore_locations=2) as platform:
            terminal = Terminal("13912345678", "127.0.0.1", platform.port, settings=FAST)

            async def body():
                await asyncio.wait_for(terminal.authenticated.wait(), WAIT_S)
                terminal.offer(location())
                await platform.wait_for(lambda: platform.by_id[LOCATION] == 3)
                await asyncio.wait_for(terminal.idle.wait(), WAIT_S)

            await run_terminal(terminal, body)
            serials = {m.header.serial for m in platform.of(LOCATION)}
            assert len(serials) == 1
            assert len({m.body for m in platform.of(LOCATION)}) == 1
            c = terminal.counters
            assert (c.sent, c.resent, c.answered, c.connections) == (1, 2, 1, 1)

    asyncio.run(main())


def test_unanswered_report_breaks_the_link_and_goes_again_after_reauthentication():
    """N = 2 retransmissions unanswered: the link counts as broken; the terminal reconnects, authenticates with
    the kept code (no second registration) and sends the report again."""

    async def main():
        async with FakePlatform(ignore_locations=3) as platform:
            terminal = Terminal("13912345678", "127.0.0.1", platform.port, settings=FAST)

            async def body():
                terminal.offer(location())
                await platform.wait_for(lambda: platform.by_id[LOCATION] == 4)
                await asyncio.wait_for(terminal.idle.wait(), WAIT_S)

            await run_terminal(terminal, body)
            assert platform.by_id[REGISTRATION] == 1
            assert platform.by_id[AUTHENTICATION] == 2
            c = terminal.counters
            assert (c.sent, c.resent, c.answered, c.connections, c.registrations) == (2, 2, 1, 2, 1)

    asyncio.run(main())


def test_reconnects_after_a_drop_and_reauthenticates_with_the_kept_code():
    async def main():
        async with FakePlatform() as platform:
            terminal = Terminal("13912345678", "127.0.0.1", platform.port, settings=FAST)

            async def body():
                await asyncio.wait_for(terminal.authenticated.wait(), WAIT_S)
                platform.drop_all()
                await platform.wait_for(lambda: platform.by_id[AUTHENTICATION] == 2)
                await asyncio.wait_for(terminal.authenticated.wait(), WAIT_S)
                terminal.offer(location())
                await asyncio.wait_for(terminal.idle.wait(), WAIT_S)

            await run_terminal(terminal, body)
            codes = [decode_authentication(m.body, m.header).auth_code for m in platform.of(AUTHENTICATION)]
            assert codes == [FakePlatform.CODE, FakePlatform.CODE]
            assert platform.by_id[REGISTRATION] == 1
            assert (terminal.counters.connections, terminal.counters.answered) == (2, 1)

    asyncio.run(main())


def test_a_refused_code_makes_it_register_again():
    async def main():
        async with FakePlatform() as platform:
            terminal = Terminal("13912345678", "127.0.0.1", platform.port, settings=FAST)
            terminal.auth_code = "REVOKED"

            async def body():
                await asyncio.wait_for(terminal.authenticated.wait(), WAIT_S)

            await run_terminal(terminal, body)
            assert [m.header.msg_id for m in platform.messages] == [AUTHENTICATION, REGISTRATION, AUTHENTICATION]
            assert terminal.auth_code == FakePlatform.CODE
            assert terminal.counters.connect_failures == 1

    asyncio.run(main())


def test_a_refused_registration_is_a_connect_failure_and_is_tried_again():
    async def main():
        async with FakePlatform(refuse_registration=2) as platform:
            terminal = Terminal("13912345678", "127.0.0.1", platform.port, settings=FAST)

            async def body():
                await asyncio.wait_for(terminal.authenticated.wait(), WAIT_S)

            await run_terminal(terminal, body)
            assert platform.by_id[REGISTRATION] == 3
            assert platform.by_id[AUTHENTICATION] == 1
            assert terminal.counters.connect_failures == 2

    asyncio.run(main())


@pytest.mark.parametrize("version", [2013, 2019])
def test_a_text_is_kept_and_answered(version):
    async def main():
        async with FakePlatform() as platform:
            settings = TerminalSettings(**{**FAST.__dict__, "version": version})
            terminal = Terminal("13900001001", "127.0.0.1", platform.port, settings=settings)
            text = "【红色预警】城市积水内涝预警｜地点：中山东一路｜措施：绕行"

            async def body():
                await asyncio.wait_for(terminal.authenticated.wait(), WAIT_S)
                serial = platform.send(platform.writers[-1], TEXT, "13900001001",
                                       encode_text(TextMessage(0x0C, text), version), version)
                await platform.wait_for(lambda: platform.by_id[TERMINAL_REPLY] == 1)
                return serial

            task = asyncio.create_task(terminal.run())
            try:
                serial = await asyncio.wait_for(body(), WAIT_S)
            finally:
                terminal.stop()
                await asyncio.wait_for(task, WAIT_S)
            answer = platform.of(TERMINAL_REPLY)[0]
            assert decode_general_reply(answer.body) == GeneralReply(serial, TEXT, 0)
            assert answer.header.version == version
            assert list(terminal.texts) == [text]
            assert terminal.counters.texts == 1

    asyncio.run(main())


def test_heartbeat_when_idle():
    async def main():
        async with FakePlatform() as platform:
            settings = TerminalSettings(**{**FAST.__dict__, "heartbeat_s": 0.05})
            terminal = Terminal("13912345678", "127.0.0.1", platform.port, settings=settings)

            async def body():
                await platform.wait_for(lambda: platform.by_id[HEARTBEAT] >= 2)

            await run_terminal(terminal, body)
            assert terminal.counters.heartbeats >= 2
            assert terminal.counters.resent == 0

    asyncio.run(main())


def test_backlog_is_bounded_and_drops_the_oldest():
    async def main():
        async with FakePlatform() as platform:
            settings = TerminalSettings(**{**FAST.__dict__, "backlog": 3})
            terminal = Terminal("13912345678", "127.0.0.1", platform.port, settings=settings)
            for k in range(5):
                terminal.offer(location(T0 + k))
            assert (terminal.waiting, terminal.counters.dropped) == (3, 2)

            async def body():
                await asyncio.wait_for(terminal.idle.wait(), WAIT_S)

            await run_terminal(terminal, body)
            times = [decode_location(m.body).time for m in platform.of(LOCATION)]
            assert times == [T0 + 2, T0 + 3, T0 + 4]

    asyncio.run(main())


def test_a_small_fleet_reports_its_rounds_and_every_report_is_answered():
    async def main():
        async with FakePlatform() as platform:
            members = synthetic_members(5)
            fleet = TerminalFleet(members, "127.0.0.1", platform.port, position=lambda d, t: (121.49, 31.24, 20.0, 0.0),
                                  report_s=1.0, ramp_s=0.2, rounds=2, settings=FAST)
            stats = await asyncio.wait_for(fleet.run(10.0, drain_s=WAIT_S), WAIT_S * 2)
            assert (stats.terminals, stats.scheduled, stats.complete) == (5, 10, 5)
            assert (stats.counters.sent, stats.counters.answered, stats.counters.resent) == (10, 10, 0)
            assert stats.latency_p50_s < 1.0
            per_phone = Counter(m.header.terminal for m in platform.of(LOCATION))
            assert per_phone == {phone: 2 for _, phone in members}
            times = {(m.header.terminal, decode_location(m.body).time) for m in platform.of(LOCATION)}
            assert len(times) == 10  # one second apart at least: distinct report times

    asyncio.run(main())


def test_the_simulator_hook_hands_positions_to_terminals_and_keeps_the_rest_on_mqtt():
    """`jt808_fleet_for`: vehicles and units with a phone report over JT/T 808 (in their own thread), every other
    message (sensors, the bad ones) stays in the MQTT output; every position is answered."""
    from scenarios.feeds.jt808_sim import jt808_fleet_for
    from scenarios.feeds.simulator import FeedConfig, Simulator

    loop = asyncio.new_event_loop()
    platform = FakePlatform()
    loop.run_until_complete(platform.__aenter__())
    pump = threading.Thread(target=loop.run_forever, daemon=True)
    pump.start()
    try:
        sim = Simulator(FeedConfig(vehicles=4, bad_share=0.3, vehicle_report_s=5.0))
        plain = Simulator(FeedConfig(vehicles=4, bad_share=0.3, vehicle_report_s=5.0))
        with jt808_fleet_for(sim, "127.0.0.1", platform.port, settings=FAST, ramp_s=0.1) as feeds:
            kept = [m for _ in range(12) for m in feeds.step(1.0)]
            everything = [m for _ in range(12) for m in plain.step(1.0)]
            members = dict(feeds.fleet.members)
        stats = feeds.stats
        assert stats is not None
        beidou = {f"city/beidou/{d}" for d in members}
        assert {"veh-001", "veh-004", "unit-police-01"} <= members.keys()
        diverted = [m for m in everything if m[0] in beidou]
        assert feeds.diverted > 0
        assert len(kept) + feeds.diverted == len(everything)  # same seed: the same messages, some handed over
        assert sum(1 for m in kept if m[0] in beidou) == len(diverted) - feeds.diverted  # only the bad ones stay
        assert stats.counters.answered == feeds.diverted == stats.scheduled
        assert sim.t == plain.t and feeds.t == sim.t  # the wrapper is the simulator
        positions = [decode_location(m.body) for m in platform.of(LOCATION)]
        assert all(T0 < p.time <= sim.t and p.fixed for p in positions)
        assert "answered" in feeds.summary()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        pump.join(5)
        loop.run_until_complete(platform.__aexit__())
        loop.close()
