"""One terminal connection: the read loop, the bounded write queue, and the link-level protocol.

Reading: ``FrameSplitter`` cuts the stream (at most ``MAX_FRAME`` bytes held), ``parse_frame`` checks each
frame, sub-packages are joined (``Reassembler``), and the message is dispatched (JT/T 808-2013 sections 8.1-8.8,
8.18, 8.55; 2019 likewise). A connection that sends nothing for ``idle_timeout_s`` is closed.

Writing: frames go on a queue of at most ``write_queue`` frames that one task writes out (the transport buffers
at most ``write_buffer_bytes``). A client that does not read fills it; the connection is then dropped
(``stats.slow_closed``): a hostile client never stalls the gateway or other terminals.

Location reports (0x0200, 0x0704) of an authenticated terminal are published whole and answered 0x8001 result 0
only once the broker confirmed them (``MqttBridge.publish``); a report not confirmed is not answered, and the
terminal sends it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from ingest.jt808 import messages as m
from ingest.jt808.framing import FLAG, FrameSplitter, check_code, escape, unescape
from ingest.jt808.header import Header, Message, build_frame, parse_frame
from ingest.jt808.location import decode_batch_location, decode_location
from ingest.jt808.reassembly import Reassembler, frame_payload
from ingest.rejection import Reason, Refusal, Rejection, reject

if TYPE_CHECKING:
    from ingest.jt808.gateway import Gateway

log = logging.getLogger(__name__)

READ_CHUNK = 16 * 1024
"""Bytes read at a time [byte]."""
MAX_CONFIRMING = 64
"""Reports of one connection awaiting the broker's PUBACK at most [1]; more are left unanswered (resent)."""
MAX_TEXTS_OUT = 32
"""Texts of one connection awaiting the terminal's 0x0001 that are remembered [1]."""
REPORTS = (m.LOCATION, m.BATCH_LOCATION)
_FLAG = bytes((FLAG,))


class Session:
    """A terminal's TCP connection (see the module docstring); ``gateway`` holds the shared parts."""

    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gw = gateway
        self.stats = gateway.stats
        self.reader, self.writer = reader, writer
        self.splitter = FrameSplitter()
        self.reassembler = Reassembler(max_pending=8, timeout_s=60.0)
        self.terminal: str | None = None
        """Phone (leading zeros stripped) of the last frame parsed."""
        self.device: str | None = None
        """The device this connection authenticated as (None before authentication)."""
        self.auth_terminal: str | None = None
        self._auth_header: Header | None = None
        self.closed = False
        self._serial = 0
        self._out: asyncio.Queue[bytes] = asyncio.Queue(gateway.config.write_queue)
        self._confirming: set[asyncio.Task] = set()
        self._texts: OrderedDict[int, str] = OrderedDict()
        self._pieces: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._writer_task: asyncio.Task | None = None

    # -- connection ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes, idles out, or the gateway stops."""
        self.writer.transport.set_write_buffer_limits(high=self.gw.config.write_buffer_bytes)
        self._writer_task = asyncio.create_task(self._write_loop())
        try:
            await self._read_loop()
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()
            self.stats.garbage_bytes += self.splitter.garbage

    async def _read_loop(self) -> None:
        idle = self.gw.config.idle_timeout_s
        while not self.closed:
            try:
                async with asyncio.timeout(idle):  # no extra task per read, unlike wait_for
                    chunk = await self.reader.read(READ_CHUNK)
            except TimeoutError:
                self.stats.idle_closed += 1
                return
            if not chunk:
                return
            for frame in self.splitter.feed(chunk):
                self.on_frame(frame)
                if self.closed:
                    return
            await asyncio.sleep(0)  # a flooding terminal leaves the loop to the others between reads

    async def _write_loop(self) -> None:
        try:
            while True:
                frame = await self._out.get()
                self.writer.write(frame)
                while not self._out.empty():
                    self.writer.write(self._out.get_nowait())
                await self.writer.drain()
        except (ConnectionError, OSError):
            self.close()

    def close(self) -> None:
        """Close the connection at once (unsent frames are dropped); idempotent."""
        if self.closed:
            return
        self.closed = True
        self.writer.transport.abort()
        for task in (*self._confirming, self._writer_task):
            if task is not None:
                task.cancel()
        self.gw.session_closed(self)

    def _send(self, frame: bytes) -> bool:
        if self.closed:
            return False
        try:
            self._out.put_nowait(frame)
        except asyncio.QueueFull:
            self.stats.slow_closed += 1
            log.warning("terminal %s does not read its answers: connection dropped", self.terminal)
            self.close()
            return False
        return True

    def _next_serial(self) -> int:
        serial, self._serial = self._serial, (self._serial + 1) & 0xFFFF
        return serial

    def send_message(self, header: Header, msg_id: int, body: bytes) -> int | None:
        """Send a platform message in the layout (version, phone) of the terminal's ``header``; its serial, or
        None when it was not sent."""
        serial = self._next_serial()
        frame = build_frame(msg_id, header.phone, serial, body, version=header.version,
                            protocol_version=header.protocol_version or 1)
        return serial if self._send(frame) else None

    def reply(self, header: Header, result: int, serial: int | None = None) -> None:
        """0x8001 general reply to the terminal's message ``header`` (its ``serial`` unless given)."""
        body = m.encode_general_reply(m.GeneralReply(header.serial if serial is None else serial, header.msg_id,
                                                     result))
        self.send_message(header, m.PLATFORM_REPLY, body)

    def send_text(self, text: str, flags: int) -> bool:
        """A 0x8300 text to the authenticated terminal; False when there is none (closed or not authenticated)."""
        header = self._auth_header
        if self.closed or self.device is None or header is None:
            return False
        body = m.encode_text(m.TextMessage(flags, text), header.version)
        serial = self.send_message(header, m.TEXT, body)
        if serial is None:
            return False
        self._texts[serial] = text
        while len(self._texts) > MAX_TEXTS_OUT:
            self._texts.popitem(last=False)
        return True

    # -- frames --------------------------------------------------------------------------------------

    def on_frame(self, escaped: bytes) -> None:
        """One frame between flags: parse, join, dispatch; bad input becomes a dead letter, never an exception."""
        self.stats.frames += 1
        raw = _FLAG + escaped + _FLAG
        try:
            msg = parse_frame(escaped)
        except Refusal as refusal:
            self._bad_frame(escaped, raw, refusal)
            return
        self.terminal = msg.header.terminal
        self.stats.count_message(msg.header.msg_id)
        try:
            self.dispatch(msg, raw)
        except Refusal as refusal:
            self.dead_letter(msg.header, refusal.rejection(raw), raw)
            self.reply(msg.header, m.RESULT_BAD_MESSAGE)
        except Exception:  # a bug of ours: counted and logged, the connection goes on
            self.stats.internal_errors += 1
            log.exception("internal error on message 0x%04x of terminal %s", msg.header.msg_id, self.terminal)

    def _bad_frame(self, escaped: bytes, raw: bytes, refusal: Refusal) -> None:
        header = readable_header(escaped)
        if header is not None:
            self.terminal = header.terminal
        self.dead_letter(header, refusal.rejection(raw), raw)
        if header is not None:
            self.reply(header, m.RESULT_BAD_MESSAGE)

    def dead_letter(self, header: Header | None, rejection: Rejection, raw: bytes) -> None:
        """Count a refusal by reason and publish its dead letter (topic of the device, else of the phone)."""
        self.stats.refuse(rejection.reason)
        name = self.device or f"jt808:{header.terminal if header else self.terminal or 'unknown'}"
        self.gw.dead_letter(f"{self.gw.config.prefix}beidou/{name}", rejection, raw)

    def dispatch(self, msg: Message, raw: bytes) -> None:
        h = msg.header
        if h.encrypted:
            self.stats.unsupported += 1
            self.reply(h, m.RESULT_UNSUPPORTED)
        elif h.msg_id == m.REGISTRATION:
            self.on_registration(msg, raw)
        elif h.msg_id == m.AUTHENTICATION:
            self.on_authentication(msg)
        elif h.msg_id == m.TERMINAL_REPLY:
            self.on_terminal_reply(msg)
        elif h.msg_id not in (m.HEARTBEAT, m.DEREGISTRATION, *REPORTS):
            self.stats.unsupported += 1
            self.reply(h, m.RESULT_UNSUPPORTED)
        elif self.device is None or h.terminal != self.auth_terminal:
            self.on_unauthenticated(msg, raw)
        elif h.msg_id == m.HEARTBEAT:
            self.reply(h, m.RESULT_OK)
        elif h.msg_id == m.DEREGISTRATION:
            self.gw.terminals.revoke(h.phone)
            self.reply(h, m.RESULT_OK)
            self.stats.deregistrations += 1
            self.gw.detach(self)
            self.device = self.auth_terminal = self._auth_header = None
        else:
            self.on_report(msg, raw)

    def on_registration(self, msg: Message, raw: bytes) -> None:
        h = msg.header
        m.decode_registration(msg.body, h)
        found = self.gw.terminals.lookup(h.phone)
        if not found.active:
            reason = Reason.RETIRED_DEVICE if found.status == "retired" else Reason.UNKNOWN_DEVICE
            what = f"device {found.device_id} is retired" if found.device_id else "not in the registry"
            self.dead_letter(h, reject(reason, f"terminal {h.terminal} {what}", raw, "header.phone"), raw)
            body = m.encode_registration_reply(m.RegistrationReply(h.serial, m.REG_NO_TERMINAL))
        else:
            self.stats.registrations += 1
            code = self.gw.terminals.issue(h.phone)
            body = m.encode_registration_reply(m.RegistrationReply(h.serial, m.REG_OK, code))
        self.send_message(h, m.REGISTRATION_REPLY, body)

    def on_authentication(self, msg: Message) -> None:
        h = msg.header
        auth = m.decode_authentication(msg.body, h)
        found = self.gw.terminals.lookup(h.phone)
        if not (found.active and self.gw.terminals.check(h.phone, auth.auth_code)):
            self.stats.auth_failed += 1
            self.reply(h, m.RESULT_FAILURE)
            return
        self.stats.auth_ok += 1
        self.device, self.auth_terminal, self._auth_header = found.device_id, h.terminal, h
        self.reply(h, m.RESULT_OK)
        self.gw.attach(self)

    def on_unauthenticated(self, msg: Message, raw: bytes) -> None:
        h = msg.header
        self.stats.unauthenticated += 1
        if h.msg_id in REPORTS:
            self.dead_letter(h, reject(Reason.UNKNOWN_DEVICE, "not authenticated", raw, "header.phone"), raw)
        self.reply(h, m.RESULT_FAILURE)

    def on_terminal_reply(self, msg: Message) -> None:
        answer = m.decode_general_reply(msg.body, msg.header)
        if answer.reply_id == m.TEXT and self._texts.pop(answer.reply_serial, None) is not None:
            self.gw.downlink.on_reply(answer.result)

    # -- location reports ----------------------------------------------------------------------------

    def on_report(self, msg: Message, raw: bytes) -> None:
        h = msg.header
        if h.packet_total:
            first = (h.serial - h.packet_index + 1) & 0xFFFF
            self._pieces[(h.msg_id, first)] = h.packet_total
            while len(self._pieces) > 64:
                self._pieces.popitem(last=False)
        whole = self.reassembler.add(msg, time.monotonic())
        if whole is None:
            return
        serials = [h.serial]
        if h.packet_total:
            total = self._pieces.pop((h.msg_id, whole.header.serial), h.packet_total)
            serials = [(whole.header.serial + k) & 0xFFFF for k in range(total)]
            payload = frame_payload(whole)  # Refusal(too_large) or a bad batch: a dead letter
        else:
            payload = raw
        _check_body(whole)
        if len(self._confirming) >= MAX_CONFIRMING:
            self.stats.confirm_backlog += 1
            return
        task = asyncio.create_task(self._publish(whole.header, payload, serials))
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)

    async def _publish(self, header: Header, payload: bytes, serials: list[int]) -> None:
        topic = f"{self.gw.config.prefix}beidou/{self.device}"
        if not await self.gw.bridge.publish(topic, payload):
            self.stats.publish_unconfirmed += 1
            return
        self.stats.published += 1
        for serial in serials:
            self.reply(header, m.RESULT_OK, serial)


def _check_body(msg: Message) -> None:
    """Decode a report's body to refuse a bad one before it is published (``Refusal``)."""
    if msg.header.msg_id == m.LOCATION:
        decode_location(msg.body)
    else:
        decode_batch_location(msg.body)


def readable_header(escaped: bytes) -> Header | None:
    """The header of a refused frame when it can still be read (the frame parses once its check code is
    recomputed), so the terminal can be answered "message error"; None otherwise."""
    try:
        data = unescape(escaped)
        if len(data) < 2:
            return None
        body = data[:-1]
        return parse_frame(escape(body + bytes((check_code(body),)))).header
    except Refusal:
        return None
