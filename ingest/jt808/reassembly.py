"""Sub-package reassembly (JT/T 808-2013 section 4.4.3 message packet fields; 2019 section 4.5.3).

A long message is sent as ``packet_total`` frames with 1-based ``packet_index`` and consecutive serial numbers;
the first piece's serial (serial - index + 1, modulo 65536) names the message, as the platform's resend request
0x8003 does. Pieces may arrive in any order; a repeated piece is ignored. Memory is bounded: at most
``max_pending`` unfinished messages of at most ``max_packets`` pieces and ``max_bytes`` bytes held in all (checked
on every piece); the oldest unfinished message makes room, one bigger than ``max_bytes`` alone is dropped
(``oversize``), and one unfinished after ``timeout_s`` is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ingest.jt808.framing import MAX_BODY
from ingest.jt808.header import Message, build_frame
from ingest.jt808.location import decode_batch_location, encode_batch_location, encode_location
from ingest.jt808.messages import BATCH_LOCATION
from ingest.rejection import Reason, Refusal

Key = tuple[str, int, int, int]  # terminal, msg id, packet total, first serial


@dataclass
class _Pending:
    started: float
    pieces: dict[int, Message] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """Joins sub-packaged messages (one instance per connection or one for all: keys carry the terminal).

    Counters: ``completed``, ``duplicates`` (pieces seen before), ``expired`` (messages dropped after
    ``timeout_s``), ``evicted`` (dropped to make room), ``oversize`` (pieces of messages announcing more than
    ``max_packets`` pieces, refused, and messages dropped because they alone held more than ``max_bytes``).
    """

    def __init__(
        self, max_pending: int = 64, timeout_s: float = 60.0, max_packets: int = 64, max_bytes: int = 4 << 20
    ) -> None:
        if max_pending < 1 or max_packets < 1 or timeout_s <= 0 or max_bytes < MAX_BODY:
            raise ValueError("max_pending, max_packets, timeout_s must be positive and max_bytes >= MAX_BODY")
        self.max_pending, self.timeout_s = max_pending, timeout_s
        self.max_packets, self.max_bytes = max_packets, max_bytes
        self.completed = self.duplicates = self.expired = self.evicted = self.oversize = 0
        self._pending: dict[Key, _Pending] = {}  # in order of first piece
        self._held = 0

    @property
    def pending(self) -> int:
        """Unfinished messages held [1]."""
        return len(self._pending)

    @property
    def held_bytes(self) -> int:
        """Body bytes held [byte]."""
        return self._held

    def add(self, msg: Message, now: float) -> Message | None:
        """The whole message when ``msg`` is its last missing piece (header without packet fields, serial of the
        first piece, body of all pieces in order), ``msg`` itself when it is not sub-packaged, else None."""
        self.expire(now)
        h = msg.header
        if not h.packet_total:
            return msg
        if h.packet_total > self.max_packets:
            self.oversize += 1
            return None
        key = (h.terminal, h.msg_id, h.packet_total, (h.serial - h.packet_index + 1) & 0xFFFF)
        entry = self._pending.get(key)
        if entry is None:
            self._make_room(len(msg.body))
            entry = self._pending[key] = _Pending(now)
        if h.packet_index in entry.pieces:
            self.duplicates += 1
            return None
        if self._held + len(msg.body) > self.max_bytes:  # every piece, not only a message's first, keeps the bound
            self._make_room(len(msg.body), keep=key)
            if self._held + len(msg.body) > self.max_bytes:  # this message alone is over the bound
                self._drop(key)
                self.oversize += 1
                return None
        entry.pieces[h.packet_index] = msg
        entry.size += len(msg.body)
        self._held += len(msg.body)
        if len(entry.pieces) < h.packet_total:
            return None
        return self._join(key, entry)

    def expire(self, now: float) -> None:
        """Drop the unfinished messages whose first piece came more than ``timeout_s`` before ``now``."""
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if now - entry.started <= self.timeout_s:
                return
            self._drop(key)
            self.expired += 1

    def _make_room(self, incoming: int, keep: Key | None = None) -> None:
        """Drop the oldest unfinished messages (not ``keep``) until a new message and ``incoming`` bytes fit."""
        while True:
            full = len(self._pending) >= self.max_pending and keep is None
            if not (full or self._held + incoming > self.max_bytes):
                return
            oldest = next((k for k in self._pending if k != keep), None)
            if oldest is None:
                return
            self._drop(oldest)
            self.evicted += 1

    def _drop(self, key: Key) -> None:
        self._held -= self._pending.pop(key).size

    def _join(self, key: Key, entry: _Pending) -> Message:
        self._drop(key)
        self.completed += 1
        pieces = [entry.pieces[i] for i in range(1, len(entry.pieces) + 1)]
        body = b"".join(p.body for p in pieces)
        first = pieces[0].header
        header = replace(first, body_length=len(body), packet_total=0, packet_index=0, serial=key[3])
        return Message(header, body)


def frame_payload(msg: Message) -> bytes:
    """The escaped frame(s), flags included, that carry a whole (reassembled) message to the twin: one frame when
    the body fits ``MAX_BODY``; a 0x0704 batch too long for one frame becomes several whole 0x0704 frames of the
    same type, back to back (``ingest.decoders.jt808.jt808_records`` reads them all). Any other message too long
    for a frame is ``Refusal(too_large)``; a bad 0x0704 body is refused as ``decode_batch_location`` does."""
    h = msg.header
    if len(msg.body) <= MAX_BODY:
        return _frame(msg, msg.body, h.serial)
    if h.msg_id != BATCH_LOCATION:
        raise Refusal(Reason.TOO_LARGE, f"message 0x{h.msg_id:04x} of {len(msg.body)} bytes", "body")
    kind, locations = decode_batch_location(msg.body)
    chunks: list[list] = [[]]
    size = 3
    for loc in locations:
        item = 2 + len(encode_location(loc))
        if size + item > MAX_BODY and chunks[-1]:
            chunks.append([])
            size = 3
        chunks[-1].append(loc)
        size += item
    return b"".join(
        _frame(msg, encode_batch_location(kind, chunk), (h.serial + k) & 0xFFFF) for k, chunk in enumerate(chunks)
    )


def _frame(msg: Message, body: bytes, serial: int) -> bytes:
    h = msg.header
    if len(body) > MAX_BODY:
        raise Refusal(Reason.TOO_LARGE, f"location of {len(body)} bytes", "body")
    return build_frame(
        h.msg_id, h.phone, serial, body, version=h.version, protocol_version=h.protocol_version,
        encrypted=h.encrypted,
    )  # fmt: skip
