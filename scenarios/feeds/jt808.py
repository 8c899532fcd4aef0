"""A simulated JT/T 808 vehicle terminal: one TCP connection to a platform, asyncio.

`Terminal` speaks as a vehicle terminal does (JT/T 808-2013 / -2019, chapter 8):

* connect, register (0x0100; the 2013 or 2019 body layout) unless it holds an authentication code from an earlier
  registration (0x8100), then authenticate with it (0x0102);
* send each location report (0x0200) it is handed and wait for the platform's general response (0x8001) to that
  serial; without an answer it sends the same frame again, with the standard's retransmission rule: the first
  wait is the TCP reply timeout T (terminal parameter 0x0002), the wait after the n-th retransmission is the
  previous wait x (n + 1), at most N retransmissions (parameter 0x0003); after that the connection counts as
  broken and the report is kept for the next connection;
* send a heartbeat (0x0002) when it has sent nothing for the heartbeat interval (parameter 0x0001);
* answer a platform text (0x8300) with a terminal general response (0x0001) and keep the text;
* when the connection drops, reconnect after a back-off (doubling from ``backoff_min_s`` up to ``backoff_max_s``,
  with jitter) and authenticate again with the kept code (a refused code makes it register again).

Memory is bounded: at most ``backlog`` reports wait (the oldest is dropped and counted), ``texts_kept`` texts are
kept, one request waits for its answer at a time. `scenarios.feeds.jt808_fleet` runs many terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ingest.jt808.framing import FrameSplitter
from ingest.jt808.header import Message, build_frame, parse_frame
from ingest.jt808.location import Location, encode_location
from ingest.jt808.messages import (
    AUTHENTICATION,
    HEARTBEAT,
    LOCATION,
    PLATFORM_REPLY,
    REGISTRATION,
    REGISTRATION_REPLY,
    RESULT_OK,
    TERMINAL_REPLY,
    TEXT,
    Authentication,
    GeneralReply,
    Registration,
    decode_general_reply,
    decode_registration_reply,
    decode_text,
    encode_authentication,
    encode_general_reply,
    encode_registration,
)
from ingest.rejection import Refusal

TERMINAL_UNSUPPORTED = 3
"""Terminal general response result "not supported" (0x0001, JT/T 808-2013 section 8.1)."""
MAX_SERIAL = 0xFFFF


class LinkDownError(ConnectionError):
    """The connection is gone, or the platform left a request unanswered after every retransmission."""


class RefusedError(ConnectionError):
    """The platform refused the registration (0x8100 result ``result``) or the authentication."""

    def __init__(self, what: str, result: int) -> None:
        super().__init__(f"{what} refused, result {result}")
        self.result = result


@dataclass
class TerminalSettings:
    """How a terminal talks; times in seconds."""

    version: int = 2013
    """2013 or 2019 (header with the version bit and a 20-digit phone; the 2019 registration body)."""
    reply_timeout_s: float = 10.0
    """T: the first wait for an answer (terminal parameter 0x0002, TCP reply timeout)."""
    retries: int = 3
    """N: retransmissions before the connection counts as broken (terminal parameter 0x0003)."""
    heartbeat_s: float = 60.0
    """Idle time after which a heartbeat goes out (terminal parameter 0x0001)."""
    connect_timeout_s: float = 10.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    backlog: int = 100
    """Reports kept while unanswered; beyond it the oldest is dropped (``dropped``)."""
    texts_kept: int = 20
    read_chunk: int = 4096
    """Bytes read from the socket at a time."""


@dataclass
class TerminalCounters:
    """What one terminal did [1]."""

    sent: int = 0
    """Location reports sent (first transmissions)."""
    answered: int = 0
    """Location reports the platform answered (0x8001, result 0)."""
    resent: int = 0
    """Retransmissions (of any request)."""
    texts: int = 0
    """Platform texts (0x8300) received and answered."""
    connect_failures: int = 0
    """Connection attempts that failed (TCP, registration or authentication)."""
    connections: int = 0
    """Connections that reached the authenticated state."""
    registrations: int = 0
    heartbeats: int = 0
    dropped: int = 0
    """Reports dropped from a full backlog."""
    refused: int = 0
    """Reports answered with a result other than 0."""
    bad_frames: int = 0
    """Frames from the platform that did not parse."""


def retransmission_waits(timeout_s: float, retries: int) -> list[float]:
    """The waits for an answer [s]: T, then T_{n+1} = T_n x (n + 1) after the n-th retransmission."""
    waits = [timeout_s]
    for n in range(1, retries + 1):
        waits.append(waits[-1] * (n + 1))
    return waits


class Terminal:
    """One simulated vehicle terminal with phone number ``phone`` talking to the platform at ``host:port``.

    ``offer`` hands it a report; ``run`` keeps it connected and sending until ``stop``. ``on_answer(latency_s)`` is
    called for each answered report (first transmission to answer [s])."""

    def __init__(self, phone: str, host: str, port: int, *, settings: TerminalSettings | None = None,
                 plate: str = "", seed: int | None = None,
                 on_answer: Callable[[float], None] | None = None) -> None:
        self.phone, self.host, self.port = phone, host, port
        self.settings = settings or TerminalSettings()
        self.plate = plate
        self.auth_code: str | None = None
        self.counters = TerminalCounters()
        self.texts: deque[str] = deque(maxlen=self.settings.texts_kept)
        self.authenticated = asyncio.Event()
        """Set while the terminal is connected and authenticated."""
        self.idle = asyncio.Event()
        """Set while no report waits (every report offered has been answered or dropped)."""
        self.idle.set()
        self._on_answer = on_answer
        self._rng = random.Random(seed if seed is not None else phone)
        self._backlog: deque[tuple[Location, float]] = deque()
        self._wake = asyncio.Event()
        self._serial = 0
        self._waiting: dict[int, asyncio.Future[Message]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._stopped = False
        self._halt = asyncio.Event()
        """Set by ``stop``: ends a back-off pause."""

    # -- what the terminal is asked to do ---------------------------------------------------------------

    def offer(self, location: Location) -> None:
        """Queue a location report (dropping the oldest when ``backlog`` are waiting)."""
        if len(self._backlog) >= self.settings.backlog:
            self._backlog.popleft()
            self.counters.dropped += 1
        self._backlog.append((location, time.monotonic()))
        self.idle.clear()
        self._wake.set()

    @property
    def waiting(self) -> int:
        """Reports not yet answered."""
        return len(self._backlog)

    def stop(self) -> None:
        """Make ``run`` return (the connection closes)."""
        self._stopped = True
        self._halt.set()
        self._close()

    async def run(self) -> None:
        """Stay connected and send reports and heartbeats until ``stop``; reconnect with back-off."""
        backoff = self.settings.backoff_min_s
        while not self._stopped:
            try:
                await self.connect()
            except (OSError, TimeoutError, RefusedError):
                self.counters.connect_failures += 1
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max_s)
                continue
            backoff = self.settings.backoff_min_s
            with contextlib.suppress(OSError, TimeoutError):
                await self._serve()
            self._close()
            if not self._stopped:
                await self._pause(backoff)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` x (0.5 .. 1) (jitter spreads a fleet's reconnects) unless stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._halt.wait(), seconds * self._rng.uniform(0.5, 1.0))

    async def _serve(self) -> None:
        """Send the backlog in order, heartbeats when idle, until the link breaks or ``stop``."""
        last_sent = time.monotonic()
        while not self._stopped and self._writer is not None:
            if not self._backlog:
                self.idle.set()
                self._wake.clear()
                idle_left = self.settings.heartbeat_s - (time.monotonic() - last_sent)
                try:
                    await asyncio.wait_for(self._wake.wait(), max(idle_left, 0.0))
                except TimeoutError:
                    await self.heartbeat()
                    last_sent = time.monotonic()
                continue
            item = self._backlog[0]
            location, offered_at = item
            result = await self.report(location)
            if self._backlog and self._backlog[0] is item:  # not dropped by ``offer`` meanwhile
                self._backlog.popleft()
            last_sent = time.monotonic()
            if result == RESULT_OK:
                self.counters.answered += 1
                if self._on_answer is not None:
                    self._on_answer(last_sent - offered_at)
            else:
                self.counters.refused += 1

    # -- the link ------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection, register when no code is kept, authenticate (JT/T 808-2013 sections 8.4-8.6)."""
        self._close()
        s = self.settings
        reader, self._writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                      s.connect_timeout_s)
        self._reader_task = asyncio.create_task(self._read(reader, self._writer))
        self._reader_task.add_done_callback(_retrieved)
        try:
            if self.auth_code is None:
                await self.register()
            body = encode_authentication(self._authentication(), self.settings.version)
            reply = decode_general_reply((await self._request(AUTHENTICATION, body)).body)
            if reply.result != RESULT_OK:
                self.auth_code = None  # a revoked or unknown code: register again next time
                raise RefusedError("authentication", reply.result)
        except BaseException:
            self._close()
            raise
        self.counters.connections += 1
        self.authenticated.set()

    async def register(self) -> None:
        """Register (0x0100) and keep the authentication code of the answer (0x8100)."""
        registration = Registration(province=31, city=101, maker="CTWIN", model="SIM-808",
                                    terminal_id=self.phone[-7:], plate_colour=1 if self.plate else 0,
                                    plate=self.plate or f"VIN{self.phone[-14:]}", layout=self.settings.version)
        answer = await self._request(REGISTRATION, encode_registration(registration))
        reply = decode_registration_reply(answer.body)
        if reply.result != RESULT_OK or not reply.auth_code:
            raise RefusedError("registration", reply.result)
        self.auth_code = reply.auth_code
        self.counters.registrations += 1

    def _authentication(self) -> Authentication:
        if self.settings.version == 2019:
            return Authentication(auth_code=self.auth_code or "", imei=self.phone.zfill(15)[-15:],
                                  software_version="citytwin-1")
        return Authentication(auth_code=self.auth_code or "")

    async def report(self, location: Location) -> int:
        """Send one location report (0x0200); the platform's result (raises ``LinkDownError`` without an answer)."""
        self.counters.sent += 1
        answer = await self._request(LOCATION, encode_location(location))
        return decode_general_reply(answer.body).result

    async def heartbeat(self) -> None:
        """Send a heartbeat (0x0002) and wait for its answer."""
        self.counters.heartbeats += 1
        await self._request(HEARTBEAT, b"")

    async def _request(self, msg_id: int, body: bytes) -> Message:
        """Send a message and wait for the answer to its serial, retransmitting per `retransmission_waits`."""
        if self._writer is None:
            raise LinkDownError("not connected")
        serial = self._next_serial()
        frame = build_frame(msg_id, self.phone, serial, body, version=self.settings.version)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[serial] = answer
        try:
            for n, wait in enumerate(retransmission_waits(self.settings.reply_timeout_s, self.settings.retries)):
                if n:
                    self.counters.resent += 1
                self._send(frame)
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(answer), wait)
            raise LinkDownError(f"no answer to 0x{msg_id:04x} serial {serial} after {self.settings.retries} retries")
        finally:
            self._waiting.pop(serial, None)

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) % (MAX_SERIAL + 1)
        return self._serial

    def _send(self, frame: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise LinkDownError("connection closed")
        self._writer.write(frame)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the platform's frames until the connection ends, then fail every waiting request."""
        splitter = FrameSplitter()
        try:
            while chunk := await reader.read(self.settings.read_chunk):
                for escaped in splitter.feed(chunk):
                    self._dispatch(escaped, writer)
        except OSError:
            pass
        finally:
            writer.close()
            if self._writer is writer:  # still this connection's reader: the link is down
                self._close()

    def _dispatch(self, escaped: bytes, writer: asyncio.StreamWriter) -> None:
        """One frame from the platform: an answer to a waiting request, a text, or something to refuse."""
        try:
            message = parse_frame(escaped)
            h = message.header
            if h.msg_id in (PLATFORM_REPLY, REGISTRATION_REPLY):
                serial = (decode_general_reply(message.body) if h.msg_id == PLATFORM_REPLY
                          else decode_registration_reply(message.body)).reply_serial
                answer = self._waiting.get(serial)
                if answer is not None and not answer.done():
                    answer.set_result(message)
                return
            result = RESULT_OK
            if h.msg_id == TEXT:
                self.texts.append(decode_text(message.body, h).text)
                self.counters.texts += 1
            else:
                result = TERMINAL_UNSUPPORTED
            reply = GeneralReply(reply_serial=h.serial, reply_id=h.msg_id, result=result)
            if not writer.is_closing():
                writer.write(build_frame(TERMINAL_REPLY, self.phone, self._next_serial(), encode_general_reply(reply),
                                         version=self.settings.version))
        except (Refusal, ValueError):
            self.counters.bad_frames += 1

    def _close(self) -> None:
        """Close the connection, stop its reader, fail the waiting requests and wake ``_serve``."""
        self.authenticated.clear()
        self._wake.set()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
        self._reader_task = None
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(LinkDownError("connection closed"))
        self._waiting.clear()



def _retrieved(task: asyncio.Task) -> None:
    """Done callback of a reader task: take its outcome (it ends by closing, cancelling or a socket error)."""
    if not task.cancelled():
        task.exception()
